"""scripts/publish_web.py (`make deploy`'s second half) under moto: uploads, types, stale keys, invalidation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tests.support import REGION, load_script

publish_web = load_script("publish_web")

BUCKET = "mailroom-test-webbucket"
STACK_TEMPLATE = """
Parameters:
  DistributionId: {Type: String}
Resources:
  WebBucket:
    Type: AWS::S3::Bucket
    Properties: {BucketName: BUCKET}
Outputs:
  WebBucketName: {Value: !Ref WebBucket}
  WebDistributionId: {Value: !Ref DistributionId}
  WebUrl: {Value: "https://d111111abcdef8.cloudfront.net/"}
""".replace("BUCKET", BUCKET)


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def web(tmp_path: Path) -> Path:
    files = {
        "index.html": "<!doctype html><script type=module src=/js/app.js></script>",
        "favicon.svg": "<svg xmlns='http://www.w3.org/2000/svg'/>",
        "css/app.css": "body{}",
        "js/app.js": "import './router.js';",
        "js/router.js": "export {};",
        "js/views/admin/index.js": "export {};",
        ".DS_Store": "x",
        ".well-hidden/secret.txt": "x",
        "js/.draft.js": "x",
    }
    root = tmp_path / "web"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def distribution(cloudfront: Any) -> str:
    created = cloudfront.create_distribution(
        DistributionConfig={
            "CallerReference": "test",
            "Comment": "",
            "Enabled": True,
            "Origins": {
                "Quantity": 1,
                "Items": [
                    {
                        "Id": "WebBucket",
                        "DomainName": f"{BUCKET}.s3.{REGION}.amazonaws.com",
                        "S3OriginConfig": {"OriginAccessIdentity": ""},
                    }
                ],
            },
            "DefaultCacheBehavior": {
                "TargetOriginId": "WebBucket",
                "ViewerProtocolPolicy": "redirect-to-https",
                "CachePolicyId": "658327ea-f89d-4fab-a63d-7e88639e58f6",
            },
        }
    )
    return str(created["Distribution"]["Id"])


def test_content_types() -> None:
    assert publish_web.content_type("index.html") == "text/html; charset=utf-8"
    assert publish_web.content_type("js/app.js") == "text/javascript; charset=utf-8"
    assert publish_web.content_type("css/app.css") == "text/css; charset=utf-8"
    assert publish_web.content_type("favicon.svg") == "image/svg+xml"
    assert publish_web.content_type("logo.PNG") == "image/png"
    assert publish_web.content_type("data.json") == "application/json"
    assert publish_web.content_type("blob.unknown-kind") == "application/octet-stream"


def test_the_stack_name_comes_from_samconfig(tmp_path: Path) -> None:
    assert publish_web.samconfig_parameters("default")["stack_name"] == "mailroom-dev"
    assert publish_web.samconfig_parameters("prod")["stack_name"] == "mailroom-prod"
    config = tmp_path / "samconfig.toml"
    config.write_text(
        'version = 0.1\n[qa.global.parameters]\nstack_name = "a"\nregion = "eu-west-1"\n'
        '[qa.deploy.parameters]\nstack_name = "b"\n'
    )
    assert publish_web.samconfig_parameters("qa", config) == {"stack_name": "b", "region": "eu-west-1"}
    with pytest.raises(publish_web.PublishError, match=r"no config environment \[nope\]"):
        publish_web.samconfig_parameters("nope", config)


@pytest.mark.usefixtures("aws")
def test_publish_uploads_the_app_deletes_stale_objects_and_invalidates(web: Path) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    cloudfront = boto3.client("cloudfront", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="js/old-view.js", Body=b"stale")
    s3.put_object(Bucket=BUCKET, Key="index.html", Body=b"previous")
    distribution_id = distribution(cloudfront)
    said: list[str] = []

    report = publish_web.publish(web, BUCKET, distribution_id, s3=s3, cloudfront=cloudfront, say=said.append)

    expected = {
        "index.html": "text/html; charset=utf-8",
        "favicon.svg": "image/svg+xml",
        "css/app.css": "text/css; charset=utf-8",
        "js/app.js": "text/javascript; charset=utf-8",
        "js/router.js": "text/javascript; charset=utf-8",
        "js/views/admin/index.js": "text/javascript; charset=utf-8",
    }
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert sorted(keys) == sorted(expected)  # dotfiles skipped, the stale view deleted
    for key, kind in expected.items():
        head = s3.head_object(Bucket=BUCKET, Key=key)
        assert (head["ContentType"], head["CacheControl"]) == (kind, "no-cache"), key
        assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == (web / key).read_bytes()
    assert [key for key, _, _ in report.uploaded][-1] == "index.html"  # after what it loads
    assert report.deleted == ["js/old-view.js"]

    (listed,) = cloudfront.list_invalidations(DistributionId=distribution_id)["InvalidationList"]["Items"]
    assert listed["Id"] == report.invalidation_id
    batch = cloudfront.get_invalidation(DistributionId=distribution_id, Id=report.invalidation_id)["Invalidation"]
    assert batch["InvalidationBatch"]["Paths"]["Items"] == ["/*"]
    assert any("deleted js/old-view.js" in line for line in said)
    assert said[-1].startswith(f"Invalidation {report.invalidation_id} of /* on distribution {distribution_id}")


@pytest.mark.usefixtures("aws")
def test_publish_refuses_a_folder_without_its_entry_page(tmp_path: Path) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="index.html", Body=b"live")
    (tmp_path / "app.js").write_text("")
    with pytest.raises(publish_web.PublishError, match=r"no index\.html"):
        publish_web.publish(tmp_path, BUCKET, "E1", s3=s3, cloudfront=None, say=lambda _: None)
    assert s3.get_object(Bucket=BUCKET, Key="index.html")["Body"].read() == b"live"  # nothing touched


@pytest.mark.usefixtures("aws")
def test_main_reads_the_stacks_outputs(web: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cloudfront = boto3.client("cloudfront", region_name=REGION)
    distribution_id = distribution(cloudfront)
    boto3.client("cloudformation", region_name=REGION).create_stack(
        StackName="mailroom-test",
        TemplateBody=STACK_TEMPLATE,
        Parameters=[{"ParameterKey": "DistributionId", "ParameterValue": distribution_id}],
    )
    assert publish_web.main(["--stack", "mailroom-test", "--region", REGION, "--web-dir", str(web)]) == 0
    out = capsys.readouterr().out
    assert f"to s3://{BUCKET}" in out and "The web app: https://d111111abcdef8.cloudfront.net/" in out
    s3 = boto3.client("s3", region_name=REGION)
    assert s3.head_object(Bucket=BUCKET, Key="js/app.js")["ContentType"] == "text/javascript; charset=utf-8"
    assert cloudfront.list_invalidations(DistributionId=distribution_id)["InvalidationList"]["Quantity"] == 1


@pytest.mark.usefixtures("aws")
def test_main_explains_a_stack_that_is_missing_or_has_no_web_outputs(
    web: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert publish_web.main(["--stack", "nowhere", "--region", REGION, "--web-dir", str(web)]) == 1
    assert "stack nowhere" in capsys.readouterr().err
    boto3.client("cloudformation", region_name=REGION).create_stack(
        StackName="old",
        TemplateBody="Resources:\n  B:\n    Type: AWS::S3::Bucket\nOutputs:\n  Other: {Value: x}\n",
    )
    assert publish_web.main(["--stack", "old", "--region", REGION, "--web-dir", str(web)]) == 1
    assert "no output WebBucketName, WebDistributionId: deploy it first" in capsys.readouterr().err
