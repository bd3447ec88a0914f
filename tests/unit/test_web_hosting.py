"""The web app's hosting in template.yaml: a private bucket behind CloudFront, the API under /api/*,
the security headers, the public URL parameter; and the CloudFront Functions, run with node.

The functions' JavaScript lives in the template (``FunctionCode``), so it is read from there
and evaluated in node's ``vm`` the way CloudFront calls it: ``handler(event)`` with a
viewer-request event. Without node the JavaScript tests skip, except on CI (``CI=true``),
where they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any

import pytest

from mailroom_local.template import Stack
from tests.support import ROOT, TEMPLATE

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: https:; "
    "connect-src 'self'; frame-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; "
    "object-src 'none'"
)
CACHING_OPTIMIZED = "658327ea-f89d-4fab-a63d-7e88639e58f6"
CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
ALL_VIEWER_EXCEPT_HOST_HEADER = "b689b0a8-53d0-40ab-baf2-68738e2966ac"
ALL_METHODS = {"GET", "HEAD", "OPTIONS", "PUT", "PATCH", "POST", "DELETE"}
MAILERS = ("WelcomeWorkerFunction", "NewsletterWorkerFunction", "AdminFunction")


@pytest.fixture(scope="module")
def stack() -> Stack:
    return Stack.load(TEMPLATE)


def resources(stack: Stack) -> dict[str, Any]:
    return stack.template["Resources"]


def properties(stack: Stack, logical_id: str) -> dict[str, Any]:
    value: dict[str, Any] = resources(stack)[logical_id]["Properties"]
    return value


def distribution(stack: Stack) -> dict[str, Any]:
    config: dict[str, Any] = properties(stack, "WebDistribution")["DistributionConfig"]
    return config


def api_behavior(stack: Stack) -> dict[str, Any]:
    (behavior,) = distribution(stack)["CacheBehaviors"]
    assert behavior["PathPattern"] == "/api/*"
    return dict(behavior)


def origin(stack: Stack, origin_id: str) -> dict[str, Any]:
    (found,) = [o for o in distribution(stack)["Origins"] if o["Id"] == origin_id]
    return dict(found)


# ------------------------------------------------------------------------------ the bucket
def test_the_bucket_is_private_encrypted_and_owned_by_the_bucket_owner(stack: Stack) -> None:
    bucket = properties(stack, "WebBucket")
    assert resources(stack)["WebBucket"]["Type"] == "AWS::S3::Bucket"
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    assert bucket["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    assert "WebsiteConfiguration" not in bucket and "AccessControl" not in bucket


def test_only_this_distribution_may_read_the_bucket_and_only_over_tls(stack: Stack) -> None:
    policy = properties(stack, "WebBucketPolicy")
    assert policy["Bucket"] == {"Ref": "WebBucket"}
    statements = policy["PolicyDocument"]["Statement"]
    (allow,) = [s for s in statements if s["Effect"] == "Allow"]
    assert allow["Principal"] == {"Service": "cloudfront.amazonaws.com"}
    assert allow["Action"] in ("s3:GetObject", ["s3:GetObject"])
    assert allow["Resource"] == {"Fn::Sub": "${WebBucket.Arn}/*"}
    assert allow["Condition"] == {
        "StringEquals": {
            "AWS:SourceArn": {
                "Fn::Sub": "arn:${AWS::Partition}:cloudfront::${AWS::AccountId}:distribution/${WebDistribution}"
            }
        }
    }
    (deny,) = [s for s in statements if s["Effect"] == "Deny"]
    assert deny["Principal"] == "*" and deny["Action"] == "s3:*"
    assert deny["Resource"] == [{"Fn::GetAtt": ["WebBucket", "Arn"]}, {"Fn::Sub": "${WebBucket.Arn}/*"}]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    resolved = stack.resolve(allow["Condition"])["StringEquals"]["AWS:SourceArn"]
    assert resolved == "arn:aws:cloudfront::123456789012:distribution/WebDistribution"


def test_the_bucket_origin_is_signed_by_an_origin_access_control_not_an_identity(stack: Stack) -> None:
    bucket = origin(stack, distribution(stack)["DefaultCacheBehavior"]["TargetOriginId"])
    assert bucket["DomainName"] == {"Fn::GetAtt": ["WebBucket", "RegionalDomainName"]}
    assert bucket["OriginAccessControlId"] == {"Fn::GetAtt": ["WebOriginAccessControl", "Id"]}
    assert bucket["S3OriginConfig"] == {"OriginAccessIdentity": ""}
    control = properties(stack, "WebOriginAccessControl")["OriginAccessControlConfig"]
    assert (control["OriginAccessControlOriginType"], control["SigningBehavior"], control["SigningProtocol"]) == (
        "s3",
        "always",
        "sigv4",
    )
    kinds = {resource["Type"] for resource in resources(stack).values()}
    assert "AWS::CloudFront::CloudFrontOriginAccessIdentity" not in kinds


# --------------------------------------------------------------------------- the behaviors
def test_the_default_behavior_serves_the_app_from_the_bucket_with_the_spa_fallback(stack: Stack) -> None:
    default = distribution(stack)["DefaultCacheBehavior"]
    assert default["TargetOriginId"] == "WebBucket"
    assert set(default["AllowedMethods"]) == {"GET", "HEAD"}
    assert default["CachePolicyId"] == CACHING_OPTIMIZED
    assert default["FunctionAssociations"] == [
        {"EventType": "viewer-request", "FunctionARN": {"Fn::GetAtt": ["WebSpaFallbackFunction", "FunctionARN"]}}
    ]
    # the fallback is the function's job: error responses would turn a missing file's 403 into a 200
    assert "CustomErrorResponses" not in distribution(stack)


def test_api_paths_go_to_the_api_stage_uncached_with_every_method(stack: Stack) -> None:
    behavior = api_behavior(stack)
    api = origin(stack, behavior["TargetOriginId"])
    assert api["DomainName"] == {"Fn::Sub": "${MailroomApi}.execute-api.${AWS::Region}.amazonaws.com"}
    assert api["OriginPath"] == {"Fn::Sub": "/${Stage}"}
    assert stack.resolve(api["OriginPath"]) == "/dev"
    assert api["CustomOriginConfig"]["OriginProtocolPolicy"] == "https-only"
    assert api["CustomOriginConfig"]["OriginSSLProtocols"] == ["TLSv1.2"]
    assert set(behavior["AllowedMethods"]) == ALL_METHODS
    assert behavior["CachePolicyId"] == CACHING_DISABLED
    assert behavior["OriginRequestPolicyId"] == ALL_VIEWER_EXCEPT_HOST_HEADER
    assert behavior["FunctionAssociations"] == [
        {"EventType": "viewer-request", "FunctionARN": {"Fn::GetAtt": ["WebApiPrefixFunction", "FunctionARN"]}}
    ]
    # the API behind its own distribution is regional (no second, edge-optimized distribution)
    assert properties(stack, "MailroomApi")["EndpointConfiguration"] == {"Type": "REGIONAL"}


def test_every_behavior_redirects_to_https_and_sends_the_security_headers(stack: Stack) -> None:
    for behavior in (distribution(stack)["DefaultCacheBehavior"], api_behavior(stack)):
        assert behavior["ViewerProtocolPolicy"] == "redirect-to-https"
        assert behavior["ResponseHeadersPolicyId"] == {"Ref": "WebResponseHeadersPolicy"}
    security = properties(stack, "WebResponseHeadersPolicy")["ResponseHeadersPolicyConfig"]["SecurityHeadersConfig"]
    assert security["StrictTransportSecurity"] == {
        "AccessControlMaxAgeSec": 63072000,
        "IncludeSubdomains": True,
        "Preload": True,
        "Override": True,
    }
    assert security["ContentSecurityPolicy"]["ContentSecurityPolicy"] == CSP
    assert all(header["Override"] for header in security.values())
    # what a browser gets (the local server sends the same, from Stack.response_headers)
    assert stack.response_headers() == {
        "Strict-Transport-Security": "max-age=63072000; includeSubDomains; preload",
        "Content-Security-Policy": CSP,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
    }


def test_the_distribution_speaks_http2_and_3_over_ipv6_at_the_chosen_price_class(stack: Stack) -> None:
    config = distribution(stack)
    assert config["Enabled"] is True
    assert config["HttpVersion"] == "http2and3"
    assert config["IPV6Enabled"] is True
    assert config["DefaultRootObject"] == "index.html"
    assert config["PriceClass"] == {"Ref": "PriceClass"}
    assert stack.parameters["PriceClass"] == "PriceClass_100"
    assert Stack.load(TEMPLATE, overrides={"PriceClass": "PriceClass_All"}).resolve(config["PriceClass"]) == (
        "PriceClass_All"
    )


# ---------------------------------------------------------------------- the public URL
def _mentions(value: Any, logical_id: str) -> bool:
    """Whether ``value`` refers to ``logical_id`` (Ref, GetAtt, or a Sub variable)."""
    if isinstance(value, dict):
        for key, argument in value.items():
            if key == "Ref" and argument == logical_id:
                return True
            if key == "Fn::GetAtt" and argument[0] == logical_id:
                return True
            if key == "Fn::Sub":
                text = argument if isinstance(argument, str) else argument[0]
                if "${" + logical_id + "}" in text or "${" + logical_id + "." in text:
                    return True
            if _mentions(argument, logical_id):
                return True
    if isinstance(value, list):
        return any(_mentions(item, logical_id) for item in value)
    return False


def test_the_public_url_parameter_is_the_custom_url_or_the_distributions(stack: Stack) -> None:
    parameter = properties(stack, "PublicUrlParameter")
    assert resources(stack)["PublicUrlParameter"]["Type"] == "AWS::SSM::Parameter"
    assert parameter["Type"] == "String"
    assert parameter["Name"] == {"Fn::Sub": "/${AWS::StackName}/public-url"}
    assert parameter["Value"] == {
        "Fn::If": ["HasPublicUrl", {"Ref": "PublicUrl"}, {"Fn::Sub": "https://${WebDistribution.DomainName}"}]
    }
    custom = Stack.load(TEMPLATE, overrides={"PublicUrl": "https://news.example.com"})
    assert custom.resolve(parameter["Value"]) == "https://news.example.com"


def test_the_mailers_get_the_parameters_name_and_may_read_it_without_a_cycle(stack: Stack) -> None:
    name = stack.resolve(properties(stack, "PublicUrlParameter")["Name"])
    arn = f"arn:aws:ssm:us-east-1:123456789012:parameter{name}"
    with_public_url = [
        logical_id
        for logical_id, resource in resources(stack).items()
        if "PUBLIC_URL" in ((resource.get("Properties") or {}).get("Environment") or {}).get("Variables", {})
    ]
    assert sorted(with_public_url) == sorted(MAILERS)
    for function in MAILERS:
        raw = properties(stack, function)
        variables = raw["Environment"]["Variables"]
        assert variables["PUBLIC_URL"] == {"Fn::If": ["HasPublicUrl", {"Ref": "PublicUrl"}, ""]}
        assert stack.function_env(function)["PUBLIC_URL_PARAMETER"] == name
        # a plain string: a reference to the parameter or the distribution would be a cycle
        assert not _mentions(raw, "PublicUrlParameter") and not _mentions(raw, "WebDistribution"), function
        statements = [s for policy in stack.resolve(raw["Policies"]) for s in policy.get("Statement", [])]
        (read,) = [s for s in statements if "ssm:GetParameter" in s["Action"]]
        assert read["Action"] == ["ssm:GetParameter"] and read["Resource"] == arn, function
    for logical_id, resource in resources(stack).items():
        if resource["Type"] == "AWS::Serverless::Function" and logical_id not in MAILERS:
            assert "ssm:" not in json.dumps(resource["Properties"].get("Policies")), logical_id


def test_the_outputs_name_the_web_app_its_bucket_distribution_and_parameter(stack: Stack) -> None:
    outputs = stack.template["Outputs"]
    assert outputs["WebUrl"]["Value"] == {"Fn::Sub": "https://${WebDistribution.DomainName}/"}
    assert outputs["WebBucketName"]["Value"] == {"Ref": "WebBucket"}
    assert outputs["WebDistributionId"]["Value"] == {"Ref": "WebDistribution"}
    assert outputs["PublicUrlParameterName"]["Value"] == {"Ref": "PublicUrlParameter"}
    assert "ApiUrl" in outputs
    assert stack.resolve(outputs["WebUrl"]["Value"]) == "https://webdistribution.cloudfront.net/"


# ------------------------------------------------------------- the CloudFront Functions
_HARNESS = """
const vm = require('vm');
let input = '';
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', () => {
  const { code, events } = JSON.parse(input);
  const context = vm.createContext({});
  vm.runInContext(code, context, { filename: 'function.js' });
  if (typeof context.handler !== 'function') { throw new Error('the code defines no handler(event)'); }
  process.stdout.write(JSON.stringify(events.map((event) => context.handler(event))));
});
"""


def node() -> str:
    found = shutil.which("node")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("node is needed to test the CloudFront Functions (apt-get install nodejs)")
        pytest.skip("node is not installed")
    return found


def function_code(stack: Stack, logical_id: str) -> str:
    function = properties(stack, logical_id)
    assert resources(stack)[logical_id]["Type"] == "AWS::CloudFront::Function"
    assert function["FunctionConfig"]["Runtime"] == "cloudfront-js-2.0"
    assert function["AutoPublish"] is True
    code = str(function["FunctionCode"])
    assert "function handler(event)" in code
    assert len(code.encode()) < 10 * 1024  # CloudFront's limit on a function's size
    for module_syntax in ("import ", "export ", "require("):
        assert module_syntax not in code
    return code


def viewer_request(uri: str, method: str = "GET", **query: str) -> dict[str, Any]:
    return {
        "version": "1.0",
        "context": {"eventType": "viewer-request"},
        "viewer": {"ip": "1.2.3.4"},
        "request": {
            "method": method,
            "uri": uri,
            "querystring": {name: {"value": value} for name, value in query.items()},
            "headers": {"accept": {"value": "text/html"}},
            "cookies": {},
        },
    }


def run(code: str, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    done = subprocess.run(
        [node(), "-e", _HARNESS],
        input=json.dumps({"code": code, "events": events}),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    results: list[dict[str, Any]] = json.loads(done.stdout)
    return results


def test_client_side_routes_are_served_index_html_and_files_pass(stack: Stack) -> None:
    cases = {
        "/": "/index.html",
        "/confirm": "/index.html",
        "/check-inbox": "/index.html",
        "/unsubscribe": "/index.html",
        "/admin": "/index.html",
        "/admin/": "/index.html",
        "/admin/campaigns/abc": "/index.html",
        "/index.html": "/index.html",
        "/app.js": "/app.js",
        "/css/style.css": "/css/style.css",
        "/js/views/admin/index.js": "/js/views/admin/index.js",
        "/favicon.svg": "/favicon.svg",
    }
    events = [viewer_request(uri, token="x.y") for uri in cases]
    results = run(function_code(stack, "WebSpaFallbackFunction"), events)
    assert {uri: result["uri"] for uri, result in zip(cases, results, strict=True)} == cases
    for event, result in zip(events, results, strict=True):
        # the request goes on (no response), everything but the path as it came
        assert result == {**event["request"], "uri": result["uri"]}
        assert result["querystring"] == {"token": {"value": "x.y"}}


def test_every_file_of_the_app_is_served_as_itself(stack: Stack) -> None:
    """A file without a dot in its name would be answered with index.html: web/ has none."""
    files = sorted(
        "/" + path.relative_to(ROOT / "web").as_posix()
        for path in (ROOT / "web").rglob("*")
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(ROOT / "web").parts)
    )
    assert "/index.html" in files
    results = run(function_code(stack, "WebSpaFallbackFunction"), [viewer_request(uri) for uri in files])
    assert [result["uri"] for result in results] == files


def test_the_api_prefix_is_stripped_and_the_query_kept(stack: Stack) -> None:
    cases = [
        ("GET", "/api/subscriptions", "/subscriptions"),
        ("POST", "/api/subscriptions", "/subscriptions"),
        ("GET", "/api/unsubscribe", "/unsubscribe"),
        ("POST", "/api/admin/campaigns/abc/send", "/admin/campaigns/abc/send"),
        ("GET", "/api/", "/"),
        ("GET", "/api", "/"),
    ]
    events = [viewer_request(uri, method, token="t") for method, uri, _ in cases]
    results = run(function_code(stack, "WebApiPrefixFunction"), events)
    for (method, uri, expected), result in zip(cases, results, strict=True):
        assert result["uri"] == expected, uri
        assert result["method"] == method
        assert result["querystring"] == {"token": {"value": "t"}}
        assert result["headers"] == {"accept": {"value": "text/html"}}
