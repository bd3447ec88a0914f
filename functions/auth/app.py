"""Public API: the admin console's sign-in against the admins' Cognito user pool.

- ``POST /auth/sign-in`` ``{"email", "password"}`` -> 200 ``{"id_token", "expires_in"}``, or
  200 ``{"challenge": "NEW_PASSWORD_REQUIRED", "session"}`` on an admin's first sign-in
  (the temporary password Cognito mailed them).
- ``POST /auth/new-password`` ``{"email", "session", "new_password"}`` -> 200 ``{"id_token",
  "expires_in"}``; 400 naming ``new_password`` when the pool's policy refuses it.

A wrong address or password is the same 401 (the pool prevents user-existence errors, and
so do we); Cognito's own throttling is a 429. The password passes through to Cognito and
is never stored or logged: the logger sees no request bodies. The console keeps only the ID
token (in the tab's sessionStorage); there is no refresh token in the browser.
"""

from __future__ import annotations

import os
from typing import Any

import boto3
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field

from mailroom.adapters.aws import CONFIG
from mailroom.api import ApiError, install_error_handlers, parse_json_body, respond
from mailroom.config import AuthSettings
from mailroom.observability import MetricUnit, log_metrics, logger, metrics

settings = AuthSettings.from_env(os.environ)
cognito = boto3.client("cognito-idp", config=CONFIG)
MAX_BODY_BYTES = 4096
NEW_PASSWORD_REQUIRED = "NEW_PASSWORD_REQUIRED"  # noqa: S105 - a Cognito challenge name, not a password

app = APIGatewayRestResolver()


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    email: str = Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")
    password: str = Field(min_length=1, max_length=256)


class NewPassword(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")
    session: str = Field(min_length=20, max_length=2048)
    new_password: str = Field(min_length=1, max_length=256)


def _tokens(result: dict[str, Any]) -> Response[Any]:
    authentication = result.get("AuthenticationResult")
    if authentication:
        metrics.add_metric(name="AdminSignIns", unit=MetricUnit.Count, value=1)
        return respond(200, {"id_token": authentication["IdToken"], "expires_in": authentication["ExpiresIn"]})
    challenge = result.get("ChallengeName")
    if challenge == NEW_PASSWORD_REQUIRED:
        return respond(200, {"challenge": NEW_PASSWORD_REQUIRED, "session": result["Session"]})
    # MFA and other challenges are not offered by the console; say so instead of failing.
    logger.info("sign-in challenge not supported", extra={"challenge": challenge})
    raise ApiError(
        403, "challenge_not_supported", f"This account needs {challenge}, which the console does not support."
    )


def _cognito_error(error: ClientError, *, password_field: str | None = None) -> ApiError:
    code = error.response.get("Error", {}).get("Code", "")
    logger.info("sign-in refused", extra={"cognito_error": code})
    if code in ("NotAuthorizedException", "UserNotFoundException"):
        metrics.add_metric(name="AdminSignInsRefused", unit=MetricUnit.Count, value=1)
        return ApiError(401, "wrong_credentials", "Wrong email or password, or the sign-in has expired.")
    if code == "PasswordResetRequiredException":
        return ApiError(403, "password_reset_required", "An administrator must reset this account's password.")
    if code == "UserNotConfirmedException":
        return ApiError(403, "not_confirmed", "This account is not confirmed yet.")
    if code in ("InvalidPasswordException", "InvalidParameterException") and password_field:
        return ApiError(400, "invalid_field", f"{password_field}: {_policy_message(error)}", field=password_field)
    if code in ("CodeMismatchException", "ExpiredCodeException"):
        return ApiError(401, "wrong_credentials", "The sign-in has expired; please sign in again.")
    if code in ("TooManyRequestsException", "LimitExceededException", "TooManyFailedAttemptsException"):
        return ApiError(429, "too_many_requests", "Too many sign-in attempts; please wait a minute.")
    raise error  # Cognito's own faults: the 503 of install_error_handlers


def _policy_message(error: ClientError) -> str:
    message = str(error.response.get("Error", {}).get("Message", ""))
    return message if "password" in message.lower() else "does not meet the password policy"


@app.post("/auth/sign-in")
def sign_in() -> Response[Any]:
    request = parse_json_body(app.current_event.raw_event, SignIn, max_bytes=MAX_BODY_BYTES)
    try:
        result = cognito.initiate_auth(
            ClientId=settings.user_pool_client_id,
            AuthFlow="USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": request.email.lower(), "PASSWORD": request.password},
        )
    except ClientError as error:
        raise _cognito_error(error) from None
    return _tokens(result)


@app.post("/auth/new-password")
def new_password() -> Response[Any]:
    request = parse_json_body(app.current_event.raw_event, NewPassword, max_bytes=MAX_BODY_BYTES)
    try:
        result = cognito.respond_to_auth_challenge(
            ClientId=settings.user_pool_client_id,
            ChallengeName=NEW_PASSWORD_REQUIRED,
            Session=request.session,
            ChallengeResponses={"USERNAME": request.email.lower(), "NEW_PASSWORD": request.new_password},
        )
    except ClientError as error:
        raise _cognito_error(error, password_field="new_password") from None  # noqa: S106 - a field name
    return _tokens(result)


install_error_handlers(app)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
