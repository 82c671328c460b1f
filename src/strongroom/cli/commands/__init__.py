"""The client commands of SPEC section 8, one module per topic, as ``--help`` groups them.

    common.py        the options every command takes, error reporting, the client session
    setup.py         configure, auth, get-cloud-identity
    auth_methods.py  create-auth-method-aws-iam, … delete-auth-method
    roles.py         create-role, … set-role-rule, assoc-role-am, delete-assoc
    secrets.py       create-secret, update-secret-val, get-secret-value, list-items, …
    workloads.py     run (secrets in a command's environment), agent (secrets rendered to files)

Each command is a thin layer over :class:`strongroom.cli.client.StrongroomClient`.
"""

from __future__ import annotations

from collections.abc import Callable

import typer

from strongroom.cli.commands import auth_methods, roles, secrets, setup, workloads

PANEL_SETUP = "Profile and login"
PANEL_AUTH_METHODS = "Auth methods"
PANEL_ROLES = "Access roles"
PANEL_SECRETS = "Secrets"
PANEL_WORKLOADS = "Workloads"

COMMANDS: tuple[tuple[str, Callable[..., None], str], ...] = (
    ("configure", setup.configure, PANEL_SETUP),
    ("auth", setup.auth, PANEL_SETUP),
    ("get-cloud-identity", setup.get_cloud_identity, PANEL_SETUP),
    ("create-auth-method-aws-iam", auth_methods.create_auth_method_aws_iam, PANEL_AUTH_METHODS),
    ("create-auth-method-api-key", auth_methods.create_auth_method_api_key, PANEL_AUTH_METHODS),
    ("list-auth-methods", auth_methods.list_auth_methods, PANEL_AUTH_METHODS),
    ("get-auth-method", auth_methods.get_auth_method, PANEL_AUTH_METHODS),
    ("update-auth-method-aws-iam", auth_methods.update_auth_method_aws_iam, PANEL_AUTH_METHODS),
    ("delete-auth-method", auth_methods.delete_auth_method, PANEL_AUTH_METHODS),
    ("create-role", roles.create_role, PANEL_ROLES),
    ("list-roles", roles.list_roles, PANEL_ROLES),
    ("get-role", roles.get_role, PANEL_ROLES),
    ("delete-role", roles.delete_role, PANEL_ROLES),
    ("set-role-rule", roles.set_role_rule, PANEL_ROLES),
    ("delete-role-rule", roles.delete_role_rule, PANEL_ROLES),
    ("assoc-role-am", roles.assoc_role_am, PANEL_ROLES),
    ("delete-assoc", roles.delete_assoc, PANEL_ROLES),
    ("create-secret", secrets.create_secret, PANEL_SECRETS),
    ("update-secret-val", secrets.update_secret_val, PANEL_SECRETS),
    ("get-secret-value", secrets.get_secret_value, PANEL_SECRETS),
    ("list-items", secrets.list_items, PANEL_SECRETS),
    ("describe-item", secrets.describe_item, PANEL_SECRETS),
    ("delete-item", secrets.delete_item, PANEL_SECRETS),
    ("run", workloads.run, PANEL_WORKLOADS),
    ("agent", workloads.agent, PANEL_WORKLOADS),
)


def register(app: typer.Typer) -> None:
    """Add the client commands to ``app``, grouped in panels of its --help."""
    for name, function, panel in COMMANDS:
        if name == "run":
            # Everything after `--` is the command to run, options included.
            app.command(
                name,
                rich_help_panel=panel,
                context_settings={"allow_interspersed_args": False},
            )(function)
        else:
            app.command(name, rich_help_panel=panel)(function)
