"""Wiring for join tokens: `pocketkube token create`, and the join command `up` and `server`
print (a bootstrap token Secret created through the API, its join token pinning the CA)."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from pocketkube.api import bootstraptoken, errors
from pocketkube.util import certs

SECRETS_PATH = f"/api/v1/namespaces/{bootstraptoken.NAMESPACE}/secrets"


def join_token(ca_pem: bytes, token_id: str, secret: str) -> str:
    return str(bootstraptoken.JoinToken(certs.ca_hash(ca_pem), token_id, secret))


def join_command(server_url: str, token: str) -> str:
    # No --pod-cidr: the agent takes its Node's block from the server's node IPAM, and host-gw
    # routes reach the other hosts' pods.
    return (f"pocketkube agent --server {server_url} --token {token} "
            "--node-name NAME --node-ip IP --routes host-gw --data-dir DIR")


async def new_join_token(client, ca_pem: bytes, ttl: int = bootstraptoken.DEFAULT_TTL, description: str = "") -> str:
    """Create a bootstrap token Secret through `client` (a REST client allowed to create
    Secrets in kube-system); its join token."""
    token_id, secret = bootstraptoken.generate()
    body = bootstraptoken.token_secret(token_id, secret, ttl, description=description)
    await client.request("POST", SECRETS_PATH, body=body)
    return join_token(ca_pem, token_id, secret)


def _admin(data_dir: Path) -> tuple[str, str]:
    config = yaml.safe_load((data_dir / "kubeconfig").read_text())
    return config["clusters"][0]["cluster"]["server"], config["users"][0]["user"]["token"]


async def create_token(data_dir: Path, ttl: int, description: str = "") -> int:
    """`pocketkube token create`: prints the join token (and the command using it on stderr)."""
    from pocketkube.client.rest import Client

    ca_file = data_dir / "pki" / "ca.crt"
    try:
        server, admin_token = _admin(data_dir)
        ca_pem = ca_file.read_bytes()
    except (OSError, KeyError, IndexError, TypeError, yaml.YAMLError) as e:
        print(f"pocketkube token create: no cluster in {data_dir} ({e}); start one with `pocketkube up`",
              file=sys.stderr)
        return 1
    client = Client(server, admin_token, str(ca_file), user_agent="pocketkube-token")
    try:
        token = await new_join_token(client, ca_pem, ttl, description)
    except errors.ApiError as e:
        print(f"pocketkube token create: {e.message}", file=sys.stderr)
        return 1
    finally:
        await client.close()
    print(token)
    print(f"join an agent with: {join_command(server, token)}", file=sys.stderr)
    return 0
