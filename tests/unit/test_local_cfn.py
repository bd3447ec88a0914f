"""The CloudFormation YAML loader: short-form intrinsic tags become the long form."""

from __future__ import annotations

import pytest

from mailroom_local.cfn import load_template, loads_template
from tests.support import TEMPLATE


def test_short_forms_become_long_forms() -> None:
    data = loads_template(
        """
        A: !Ref Stage
        B: !GetAtt Queue.Arn
        C: !GetAtt [Queue, QueueName]
        D: !Sub "${AWS::Region}-${Stage}"
        E: !Sub ["${X}", {X: !Ref Stage}]
        F: !Join [",", [a, !Ref Stage]]
        G: !Select [1, !Split [",", "a,b,c"]]
        H: !If [IsProd, 1, !Ref AWS::NoValue]
        I: !Equals [!Ref Stage, prod]
        J: !Not [!Condition IsProd]
        K: !FindInMap [Map, !Ref AWS::Region, Key]
        L: !Base64 text
        M: !GetAZs ""
        N: !And [!Condition A, !Or [!Condition B, !Condition C]]
        """
    )
    assert data == {
        "A": {"Ref": "Stage"},
        "B": {"Fn::GetAtt": ["Queue", "Arn"]},
        "C": {"Fn::GetAtt": ["Queue", "QueueName"]},
        "D": {"Fn::Sub": "${AWS::Region}-${Stage}"},
        "E": {"Fn::Sub": ["${X}", {"X": {"Ref": "Stage"}}]},
        "F": {"Fn::Join": [",", ["a", {"Ref": "Stage"}]]},
        "G": {"Fn::Select": [1, {"Fn::Split": [",", "a,b,c"]}]},
        "H": {"Fn::If": ["IsProd", 1, {"Ref": "AWS::NoValue"}]},
        "I": {"Fn::Equals": [{"Ref": "Stage"}, "prod"]},
        "J": {"Fn::Not": [{"Condition": "IsProd"}]},
        "K": {"Fn::FindInMap": ["Map", {"Ref": "AWS::Region"}, "Key"]},
        "L": {"Fn::Base64": "text"},
        "M": {"Fn::GetAZs": ""},
        "N": {"Fn::And": [{"Condition": "A"}, {"Fn::Or": [{"Condition": "B"}, {"Condition": "C"}]}]},
    }


def test_long_forms_and_plain_yaml_are_untouched() -> None:
    data = loads_template("A: {Ref: Stage}\nB: {'Fn::GetAtt': [Q, Arn]}\nC: [1, true, null]\n")
    assert data == {"A": {"Ref": "Stage"}, "B": {"Fn::GetAtt": ["Q", "Arn"]}, "C": [1, True, None]}


def test_dates_stay_strings_like_in_cloudformation() -> None:
    assert loads_template("AWSTemplateFormatVersion: 2010-09-09\n") == {"AWSTemplateFormatVersion": "2010-09-09"}


def test_a_template_must_be_a_mapping() -> None:
    with pytest.raises(ValueError, match="mapping"):
        loads_template("- just\n- a list\n")


def test_the_real_template_loads_with_its_intrinsics() -> None:
    template = load_template(TEMPLATE)
    resources = template["Resources"]
    env = resources["RegistrationFunction"]["Properties"]["Environment"]["Variables"]
    assert env["SUBSCRIBERS_TABLE"] == {"Ref": "SubscribersTable"}
    redrive = resources["WelcomeQueue"]["Properties"]["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["WelcomeDeadLetterQueue", "Arn"]}
    assert template["Conditions"]["CreateIdentity"] == {"Fn::Equals": [{"Ref": "CreateSenderIdentity"}, "true"]}
