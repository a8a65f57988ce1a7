"""Pod programs name the failures the operator should report (the termination message)."""

import pytest
from botocore.exceptions import ClientError, NoCredentialsError

from ferry import podexit
from ferry.adapters.s3 import ObjectStoreUnavailable


def client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "refused"}}, "GetObject")


@pytest.mark.parametrize("code", sorted(podexit.ACCESS_DENIED_CODES))
def test_s3_refusing_the_credentials_is_access_denied_also_when_wrapped(code):
    try:
        try:
            raise client_error(code)
        except ClientError as error:
            raise ObjectStoreUnavailable("s3://b/k: refused") from error
    except ObjectStoreUnavailable as wrapped:
        message = podexit.cause(wrapped)
    assert message.startswith("ObjectStoreAccessDenied: ") and code in message
    assert podexit.reported(message)[0] == "ObjectStoreAccessDenied"


def test_other_failures_are_not_named():
    assert podexit.cause(client_error("NoSuchBucket")) is None
    assert podexit.cause(ValueError("bad data")) is None
    assert podexit.reported("Traceback (most recent call last):") is None
    assert podexit.reported(None) is None


def test_no_credentials_at_all_is_access_denied():
    assert podexit.reported(podexit.cause(NoCredentialsError()))[0] == "ObjectStoreAccessDenied"


def test_a_named_failure_is_written_to_the_termination_log_with_its_exit_code(tmp_path):
    log = tmp_path / "termination-log"

    def refused() -> int:
        raise client_error("InvalidAccessKeyId")

    assert podexit.run(refused, log) == podexit.EXIT_CODE
    reason, message = podexit.reported(log.read_text())
    assert reason == "ObjectStoreAccessDenied" and "InvalidAccessKeyId" in message


def test_any_other_failure_propagates_and_a_clean_exit_is_kept(tmp_path):
    log = tmp_path / "termination-log"

    def broken() -> int:
        raise ValueError("bad data")

    with pytest.raises(ValueError):
        podexit.run(broken, log)
    assert podexit.run(lambda: 3, log) == 3
    assert not log.exists()
