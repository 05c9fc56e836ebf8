"""`kubectl create configmap|secret|serviceaccount` (protobuf bodies), get and describe, with
kubectl 1.32 and the bundled newer one, against a real `pocketkube server`; bad input answered
with Kubernetes' errors."""

from __future__ import annotations

import base64
import subprocess

import pytest
import yaml


def names(kubectl, version_tag: str) -> str:
    return kubectl.version.replace(".", "-").replace("kubectl-", "") + "-" + version_tag


def cleanup(kubectl, *args: str) -> None:
    kubectl.run("delete", "--ignore-not-found", "--wait=false", *args)


def table(out: str) -> tuple[list[str], dict[str, list[str]]]:
    header, *rows = out.strip().splitlines()
    return header.split(), {r.split()[0]: r.split() for r in rows}


def test_create_configmap_from_literal_file_and_env_file(kubectl, tmp_path):
    name = "cm-" + names(kubectl, "a")
    (tmp_path / "game.properties").write_text("lives=3\nsecret.code=up\n")
    (tmp_path / "app.env").write_text("# comment\nCOLOR=blue\nSIZE=L\n")
    out = kubectl.ok("create", "configmap", name, "--from-literal=greeting=hello world",
                     f"--from-file={tmp_path / 'game.properties'}", "--from-file=bin=/bin/true")
    assert out.strip() == f"configmap/{name} created"
    try:
        cm = yaml.safe_load(kubectl.ok("get", "configmap", name, "-o", "yaml"))
        assert cm["data"] == {"greeting": "hello world", "game.properties": "lives=3\nsecret.code=up\n"}
        assert base64.b64decode(cm["binaryData"]["bin"]) == open("/bin/true", "rb").read()
        header, rows = table(kubectl.ok("get", "cm"))
        assert header == ["NAME", "DATA", "AGE"] and rows[name][1] == "3"
        described = kubectl.ok("describe", "configmap", name)
        assert "greeting:" in described and "hello world" in described and "BinaryData" in described
        env_name = name + "-env"
        kubectl.ok("create", "cm", env_name, f"--from-env-file={tmp_path / 'app.env'}")
        assert yaml.safe_load(kubectl.ok("get", "cm", env_name, "-o", "yaml"))["data"] == {"COLOR": "blue", "SIZE": "L"}
    finally:
        cleanup(kubectl, "cm", name)
        cleanup(kubectl, "cm", name + "-env")


def test_create_secrets_generic_tls_docker_registry(kubectl, tmp_path):
    base = "s-" + names(kubectl, "b")
    key, crt = tmp_path / "tls.key", tmp_path / "tls.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(crt),
                    "-days", "1", "-subj", "/CN=example"], check=True, capture_output=True)
    created = [f"{base}-gen", f"{base}-tls", f"{base}-reg"]
    try:
        kubectl.ok("create", "secret", "generic", created[0], "--from-literal=password=s3cr=t", "--from-literal=user=me")
        kubectl.ok("create", "secret", "tls", created[1], f"--cert={crt}", f"--key={key}")
        kubectl.ok("create", "secret", "docker-registry", created[2], "--docker-server=registry.example:5000",
                   "--docker-username=u", "--docker-password=p")
        gen = yaml.safe_load(kubectl.ok("get", "secret", created[0], "-o", "yaml"))
        assert gen["type"] == "Opaque" and base64.b64decode(gen["data"]["password"]) == b"s3cr=t"
        tls = yaml.safe_load(kubectl.ok("get", "secret", created[1], "-o", "yaml"))
        assert tls["type"] == "kubernetes.io/tls" and base64.b64decode(tls["data"]["tls.crt"]) == crt.read_bytes()
        reg = yaml.safe_load(kubectl.ok("get", "secret", created[2], "-o", "yaml"))
        config = yaml.safe_load(base64.b64decode(reg["data"][".dockerconfigjson"]))
        assert config["auths"]["registry.example:5000"]["username"] == "u"
        header, rows = table(kubectl.ok("get", "secrets"))
        assert header == ["NAME", "TYPE", "DATA", "AGE"]
        assert rows[created[1]][1:3] == ["kubernetes.io/tls", "2"]
        assert rows[created[2]][1:3] == ["kubernetes.io/dockerconfigjson", "1"]
        described = kubectl.ok("describe", "secret", created[0])
        assert "password:  6 bytes" in described and "s3cr=t" not in described
        # type is immutable
        patched = kubectl.run("patch", "secret", created[0], "-p", '{"type":"kubernetes.io/basic-auth"}')
        assert patched.returncode == 1
        assert "type: Invalid value: \"kubernetes.io/basic-auth\": field is immutable" in patched.stderr
    finally:
        for n in created:
            cleanup(kubectl, "secret", n)


def test_create_serviceaccount(kubectl):
    name = "sa-" + names(kubectl, "c")
    assert kubectl.ok("create", "serviceaccount", name).strip() == f"serviceaccount/{name} created"
    try:
        header, rows = table(kubectl.ok("get", "sa"))
        assert header == ["NAME", "SECRETS", "AGE"] and rows[name][1] == "0"
        kubectl.ok("patch", "sa", name, "-p", '{"imagePullSecrets":[{"name":"reg"}],'
                                               '"automountServiceAccountToken":false}')
        sa = yaml.safe_load(kubectl.ok("get", "sa", name, "-o", "yaml"))
        assert sa["imagePullSecrets"] == [{"name": "reg"}] and sa["automountServiceAccountToken"] is False
        assert "Image pull secrets:  reg" in kubectl.ok("describe", "sa", name)
    finally:
        cleanup(kubectl, "sa", name)


BAD_SECRET = """apiVersion: v1
kind: Secret
metadata: {name: NAME}
data: {password: "not base64!"}
"""


def test_bad_input_is_a_kubernetes_error(kubectl):
    name = "bad-" + names(kubectl, "d")
    bad = kubectl.run("create", "-f", "-", input=BAD_SECRET.replace("NAME", name))
    assert bad.returncode == 1
    assert (f'The Secret "{name}" is invalid: data[password]: Invalid value: "<secret contents redacted>": '
            "illegal base64 data at input byte 3") in bad.stderr, bad.stderr
    tls = kubectl.run("create", "secret", "generic", name, "--type=kubernetes.io/tls", "--from-literal=a=b")
    assert tls.returncode == 1
    assert "data[tls.crt]: Required value" in tls.stderr and "data[tls.key]: Required value" in tls.stderr
    key = kubectl.run("create", "configmap", name, "--from-literal=a b=c")
    assert key.returncode == 1  # kubectl itself refuses the key; a manifest reaches the server
    manifest = f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{'a b': c}}\n"
    server_side = kubectl.run("create", "-f", "-", input=manifest)
    assert server_side.returncode == 1 and "data[a b]: Invalid value: \"a b\": a valid config key" in server_side.stderr
    kubectl.ok("create", "configmap", name, "--from-literal=a=1")
    try:
        kubectl.ok("patch", "configmap", name, "-p", '{"immutable":true}')
        change = kubectl.run("patch", "configmap", name, "-p", '{"data":{"a":"2"}}')
        assert change.returncode == 1
        assert "data: Forbidden: field is immutable when `immutable` is set" in change.stderr
        unset = kubectl.run("patch", "configmap", name, "-p", '{"immutable":false}')
        assert "immutable: Forbidden: field is immutable when `immutable` is set" in unset.stderr
    finally:
        cleanup(kubectl, "configmap", name)


@pytest.mark.parametrize("what", ["configmap", "secret"])
def test_string_data_and_apply(kubectl, tmp_path, what):
    name = f"apply-{what}-" + names(kubectl, "e")
    body = {"apiVersion": "v1", "kind": "Secret" if what == "secret" else "ConfigMap", "metadata": {"name": name}}
    if what == "secret":
        body["stringData"] = {"user": "admin"}
    else:
        body["data"] = {"user": "admin"}
    path = tmp_path / "obj.yaml"
    path.write_text(yaml.safe_dump(body))
    try:
        assert kubectl.ok("apply", "-f", str(path)).strip() == f"{what}/{name} created"
        got = yaml.safe_load(kubectl.ok("get", what, name, "-o", "yaml"))
        if what == "secret":
            assert got["data"] == {"user": base64.b64encode(b"admin").decode()} and "stringData" not in got
        else:
            assert got["data"] == {"user": "admin"}
        assert kubectl.ok("apply", "-f", str(path)).strip() in (f"{what}/{name} unchanged", f"{what}/{name} configured")
        if what == "secret":  # a patch's stringData lands in data too
            kubectl.ok("patch", "secret", name, "-p", '{"stringData":{"user":"root","extra":"x"}}')
            got = yaml.safe_load(kubectl.ok("get", "secret", name, "-o", "yaml"))
            assert got["data"] == {"user": base64.b64encode(b"root").decode(), "extra": "eA=="}
    finally:
        cleanup(kubectl, what, name)
