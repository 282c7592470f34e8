"""What an Azure credential is missing, said in one clause, from the environment it reads.

``DefaultAzureCredential`` tries, in order, a service principal from ``AZURE_*`` variables,
workload identity (``AZURE_FEDERATED_TOKEN_FILE``), a managed identity and the Azure CLI, and
when all fail it raises a many-line message whose first line ("failed to retrieve a token from
the included credentials") names nothing. The operator's question is which of those they meant
to use and what it lacks; that can be told from the same variables the credential reads, with
no call to anything, so `missing_credential` does it here, apart from the SDK (and testable
without one).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

_SECRETS = ("AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_USERNAME")


def _unset(env: Mapping[str, str], names: tuple[str, ...]) -> list[str]:
    return [k for k in names if not env.get(k)]


def _are(names: list[str]) -> str:
    return f"{' and '.join(names)} {'is' if len(names) == 1 else 'are'} not"


def missing_credential(env: Mapping[str, str] | None = None) -> str:
    """One clause: the credential the environment points at and what it lacks, or, with
    nothing set, the ways to give one."""
    env = os.environ if env is None else env
    ids = ("AZURE_TENANT_ID", "AZURE_CLIENT_ID")
    token_file = env.get("AZURE_FEDERATED_TOKEN_FILE", "")
    if token_file:
        if lack := _unset(env, ids):
            return f"workload identity: AZURE_FEDERATED_TOKEN_FILE is set but {_are(lack)}"
        if not os.path.isfile(token_file):
            return (
                f"workload identity: the token file {token_file} does not exist (is the pod "
                'labelled azure.workload.identity/use: "true"?)'
            )
        return (
            f"workload identity: check that client {env['AZURE_CLIENT_ID']} has a federated "
            "credential for this ServiceAccount"
        )
    secret = [k for k in _SECRETS if env.get(k)]
    if secret:
        if lack := _unset(env, ids):
            return f"service principal: {secret[0]} is set but {_are(lack)}"
        return (
            f"service principal {env['AZURE_CLIENT_ID']} in tenant {env['AZURE_TENANT_ID']}: "
            f"check that its {secret[0]} is current"
        )
    if env.get("AZURE_TENANT_ID"):
        return (
            "service principal: AZURE_TENANT_ID is set but none of AZURE_CLIENT_SECRET, "
            "AZURE_CLIENT_CERTIFICATE_PATH (and AZURE_CLIENT_ID) is"
        )
    if env.get("AZURE_CLIENT_ID"):
        return (
            f"managed identity: is the user-assigned identity {env['AZURE_CLIENT_ID']} "
            "(AZURE_CLIENT_ID) assigned to this VM?"
        )
    return (
        "no credential found: no AZURE_TENANT_ID/AZURE_CLIENT_ID/AZURE_CLIENT_SECRET (a service "
        "principal), no AZURE_FEDERATED_TOKEN_FILE (workload identity), and no managed identity "
        "answered (assign one to the VM) nor an Azure CLI login"
    )
