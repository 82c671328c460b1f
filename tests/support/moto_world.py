"""The moto world shared by every test that logs in with AWS IAM: one moto STS per session,
signature checks on, with the principals below created in it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from tests.support.moto_sts import OTHER_ACCOUNT_ID, MotoPrincipal, MotoServer

APP_SESSION = "i-0abc1234567890def"


@dataclass(frozen=True)
class MotoWorld:
    """moto with signature checks on, and the principals created in it."""

    server: MotoServer
    app_role_arn: str  # arn:aws:iam::123456789012:role/team/app-role
    other_role_arn: str  # arn:aws:iam::123456789012:role/other-role
    foreign_role_arn: str  # arn:aws:iam::999999999999:role/app-role
    app: MotoPrincipal  # app-role assumed as session APP_SESSION
    other: MotoPrincipal  # other-role assumed as session "batch-job"
    foreign: MotoPrincipal  # the other account's app-role, session APP_SESSION
    user: MotoPrincipal  # IAM user /ci/deploy-bot with a long-term key


def moto_world() -> Iterator[MotoWorld]:
    with MotoServer() as server:
        app_role_arn = server.create_role("app-role", path="/team/")
        other_role_arn = server.create_role("other-role")
        foreign_role_arn = server.create_role("app-role", account_id=OTHER_ACCOUNT_ID)
        user = server.create_user("deploy-bot", path="/ci/")
        server.enable_signature_checks()
        yield MotoWorld(
            server=server,
            app_role_arn=app_role_arn,
            other_role_arn=other_role_arn,
            foreign_role_arn=foreign_role_arn,
            app=server.assume_role(app_role_arn, APP_SESSION),
            other=server.assume_role(other_role_arn, "batch-job"),
            foreign=server.assume_role(foreign_role_arn, APP_SESSION),
            user=user,
        )
