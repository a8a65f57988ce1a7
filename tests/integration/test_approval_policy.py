"""Authenticated approvals on the real apiserver: the shipped ValidatingAdmissionPolicy and
ClusterRoles (manifests/base/approval-policy.yaml, generated from ``ferry.generate.admission``) judge
requests from real identities — alice and bob with client certificates signed by the cluster's CA,
a GitOps controller with a ServiceAccount token.

The shipped binding applies cluster-wide; here the same binding is limited to the test's namespace
(``matchResources.namespaceSelector``) so the rest of a test session, whose admin approves under
other names, is not affected.
"""

from __future__ import annotations

import base64
import datetime
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ferry.generate import admission
from support.cluster import create_namespace
from support.environ import services_environment
from support.objects import apply_manifests
from support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
EDITOR_ROLE = "modelversion-editor"


def signed_kubeconfig(cluster, user: str, folder: Path) -> Path:
    """A kubeconfig for ``user``, authenticated by a client certificate from the cluster's CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    pki = cluster.local.pki_dir
    ca_pem = (pki / "ca.crt").read_bytes()
    ca = x509.load_pem_x509_certificate(ca_pem)
    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, user),
                                     x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ml-team")]))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=2))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return write_kubeconfig(cluster, user, folder, {
        "client-certificate-data": b64(cert.public_bytes(serialization.Encoding.PEM)),
        "client-key-data": b64(key_pem)})


def token_kubeconfig(cluster, namespace: str, account: str, folder: Path) -> Path:
    token = cluster.kubectl("create", "token", account, "-n", namespace).stdout.strip()
    return write_kubeconfig(cluster, account, folder, {"token": token})


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def write_kubeconfig(cluster, user: str, folder: Path, credentials: dict) -> Path:
    ca_pem = (cluster.local.pki_dir / "ca.crt").read_bytes()
    path = folder / f"{user}.kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": user,
        "clusters": [{"name": "local", "cluster": {"server": cluster.server,
                                                   "certificate-authority-data": b64(ca_pem)}}],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": user, "context": {"cluster": "local", "user": user}}]}))
    return path


def kubectl_as(cluster, kubeconfig: Path, *args: str, input: str | None = None):
    return subprocess.run([str(cluster.bin_dir / "kubectl"), "--kubeconfig", str(kubeconfig), *args],
                          capture_output=True, text=True, input=input, timeout=60)


def ferry_approve(kubeconfig: Path, namespace: str, name: str, *flags: str):
    return subprocess.run([sys.executable, "-m", "ferry", "approve", f"mv/{name}", "-n", namespace,
                           "--kubeconfig", str(kubeconfig), *flags],
                          capture_output=True, text=True, timeout=60)


def role_binding(namespace: str, role_kind: str, role: str, subjects: list[dict]) -> dict:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": f"{role}-binding", "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
            "subjects": subjects}


def user(name: str) -> dict:
    return {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name}


@pytest.fixture(scope="module")
def trained_run(services):
    """A real MLflow run with a pyfunc model to register."""
    import mlflow

    class Constant(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return [0] * len(model_input)

    with services_environment(services):
        mlflow.set_tracking_uri(services.endpoints["mlflow"])
        mlflow.set_experiment("approval-policy-tests")
        with mlflow.start_run() as run:
            mlflow.log_metrics({"auc": 0.9})
            mlflow.pyfunc.log_model(name="model", python_model=Constant())
        return run.info.run_id


@pytest.fixture(scope="module")
def governed(cluster, tmp_path_factory):
    """A namespace under the approval policy, with alice (editor + ferry-approver), bob (editor
    only) and a GitOps controller's ServiceAccount (editor + ferry-approval-recorder)."""
    namespace = create_namespace(cluster, "ft-approval")
    folder = tmp_path_factory.mktemp("identities")
    shipped = ROOT / "manifests/base/approval-policy.yaml"
    cluster.kubectl("apply", "--server-side", "-f", str(shipped))
    (binding,) = [o for o in yaml.safe_load_all(shipped.read_text())
                  if o["kind"] == "ValidatingAdmissionPolicyBinding"]
    binding["metadata"]["name"] = f"{admission.POLICY_NAME}-{namespace}"
    binding["spec"]["matchResources"] = {"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": namespace}}}
    apply_manifests(cluster, binding)
    editor = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
              "metadata": {"name": EDITOR_ROLE, "namespace": namespace},
              "rules": [{"apiGroups": ["ferry.dev"], "resources": ["modelversions"],
                         "verbs": ["get", "list", "watch", "create", "update", "patch"]}]}
    gitops = {"kind": "ServiceAccount", "name": "gitops", "namespace": namespace}
    apply_manifests(cluster, editor, {"apiVersion": "v1", "kind": "ServiceAccount",
                                      "metadata": {"name": "gitops", "namespace": namespace}},
                    role_binding(namespace, "Role", EDITOR_ROLE,
                                 [user("alice"), user("bob"), gitops]),
                    role_binding(namespace, "ClusterRole", admission.APPROVER_ROLE, [user("alice")]),
                    role_binding(namespace, "ClusterRole", admission.RECORDER_ROLE, [gitops]))
    identities = {name: signed_kubeconfig(cluster, name, folder) for name in ("alice", "bob")}
    identities["gitops"] = token_kubeconfig(cluster, namespace, "gitops", folder)
    probe = model_version(namespace, "probe", "run-probe")
    cluster.kubectl("apply", "-f", "-", input=json.dumps(probe))

    def policy_enforced():  # the apiserver loads policies asynchronously; a dry-run shows when
        attempt = kubectl_as(cluster, identities["bob"], "patch", "modelversion.ferry.dev", "probe",
                             "-n", namespace, "--type=merge", "--dry-run=server", "-p",
                             json.dumps({"spec": {"approval": {"approvedBy": "bob"}}}))
        return attempt.returncode != 0 and admission.POLICY_NAME in attempt.stderr

    wait_for(policy_enforced, timeout=60, interval=1, message="the approval policy to be enforced")
    yield namespace, identities
    cluster.kubectl("delete", "validatingadmissionpolicybinding", binding["metadata"]["name"],
                    check=False)
    cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def model_version(namespace: str, name: str, run_id: str, **approval) -> dict:
    return {"apiVersion": "ferry.dev/v1alpha1", "kind": "ModelVersion",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"modelName": f"approval-{namespace}", "source": f"runs:/{run_id}/model",
                     "approval": {"required": True, **approval}}}


def spec_approval(cluster, namespace: str, name: str) -> dict:
    obj = json.loads(cluster.kubectl("get", "modelversion.ferry.dev", name, "-n", namespace,
                                     "-o", "json").stdout)
    return obj["spec"]["approval"]


def test_alice_approves_as_herself_and_the_operator_records_it(cluster, governed, operator,
                                                                trained_run):
    namespace, identities = governed
    apply_manifests(cluster, model_version(namespace, "fraud-1", trained_run))
    result = ferry_approve(identities["alice"], namespace, "fraud-1", "--comment", "holdout ok")
    assert result.returncode == 0, result.stderr
    assert "approved by alice" in result.stdout
    assert spec_approval(cluster, namespace, "fraud-1") == {
        "required": True, "approvedBy": "alice", "comment": "holdout ok"}

    def recorded():  # the operator's status writes go through: the approval policy lets them be
        obj = json.loads(cluster.kubectl("get", "modelversion.ferry.dev", "fraud-1", "-n", namespace,
                                         "-o", "json").stdout)
        status = obj.get("status") or {}
        return status if status.get("phase") == "Approved" else None

    status = wait_for(recorded, timeout=90, interval=1, message="fraud-1 Approved")
    assert status["approval"]["by"] == "alice"
    assert status["approval"]["comment"] == "holdout ok"


def test_bob_an_editor_without_the_right_is_refused_with_the_reason(cluster, governed):
    namespace, identities = governed
    result = ferry_approve(identities["bob"], namespace, "probe")
    assert result.returncode == 1
    assert f"user bob may not approve ModelVersions in namespace {namespace}" in result.stderr
    assert "needs the verb approve on modelversions.ferry.dev" in result.stderr
    assert "approvedBy" not in spec_approval(cluster, namespace, "probe")


def test_nobody_approves_in_someone_elses_name(cluster, governed):
    namespace, identities = governed
    as_alice = ferry_approve(identities["bob"], namespace, "probe", "--by", "alice")
    assert as_alice.returncode == 1 and "user bob may not approve" in as_alice.stderr
    as_bob = ferry_approve(identities["alice"], namespace, "probe", "--by", "bob")
    assert as_bob.returncode == 1
    assert ("spec.approval.approvedBy must be the requesting user: it names bob but the request "
            "comes from alice") in as_bob.stderr
    assert "approvedBy" not in spec_approval(cluster, namespace, "probe")


def test_editors_keep_editing_everything_but_the_approval(cluster, governed):
    namespace, identities = governed
    described = kubectl_as(cluster, identities["bob"], "patch", "modelversion.ferry.dev", "probe",
                           "-n", namespace, "--type=merge", "-p",
                           json.dumps({"spec": {"description": "edited by bob"}}))
    assert described.returncode == 0, described.stderr
    lowered = kubectl_as(cluster, identities["bob"], "patch", "modelversion.ferry.dev", "probe",
                         "-n", namespace, "--type=merge", "-p",
                         json.dumps({"spec": {"approval": {"required": False}}}))
    assert lowered.returncode != 0 and "user bob may not approve" in lowered.stderr
    assert spec_approval(cluster, namespace, "probe")["required"] is True


def test_an_approval_at_creation_needs_an_approver_or_a_recorder(cluster, governed):
    """Argo CD applying a committed approval: its ServiceAccount holds ``attest``."""
    namespace, identities = governed
    committed = json.dumps(model_version(namespace, "from-git", "run-git", approvedBy="alice"))
    by_bob = kubectl_as(cluster, identities["bob"], "create", "-f", "-", input=committed)
    assert by_bob.returncode != 0 and "user bob may not approve" in by_bob.stderr
    by_gitops = kubectl_as(cluster, identities["gitops"], "create", "-f", "-", input=committed)
    assert by_gitops.returncode == 0, by_gitops.stderr
    assert spec_approval(cluster, namespace, "from-git")["approvedBy"] == "alice"
