"""deploy/k8s/ rendered by `kubectl kustomize` and validated by `kubernetes-validate`, then read for the threat model
(docs/design.md §8), as tests/test_compose.py reads compose: which pod mounts what, which pod gets the key, which
NetworkPolicy lets which pod reach which port. No cluster is needed (none runs here).

kubectl, with kustomize built in, comes with this machine's image; elsewhere these tests skip and say how to get it.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from services_common import auth
from services_common.k8s_credentials import AUTHORITY, ROLE_FILES, Api, main

yaml = pytest.importorskip("yaml")
ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
KUBECTL = shutil.which("kubectl")
K8S_VERSION = "1.32.0"  # the version every object is validated against (kubectl's own here; >= 1.31)
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if p.is_dir())
EVES = {"eve-feature": "feature-classifier", "eve-inversion": "inversion-decoder",
        "eve-adaptive": "adaptive-diffusion", "eve-whitebox": "whitebox-inversion"}
BLACK_BOX_FILES = {"bundle.json", "eavesdropper.safetensors", "eavesdropper.json", "judge.safetensors", "judge.json",
                   "judges", "attacks"}
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason=(
    "kubectl not found: install a current kubectl, which has kustomize built in (https://kubernetes.io/docs/tasks/tools/); "
    "Debian's kubernetes-client is too old for current kustomize"))


def render(overlay: str) -> list[dict]:
    out = subprocess.run([KUBECTL, "kustomize", str(K8S / "overlays" / overlay)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, f"kustomize could not render {overlay}:\n{out.stderr}"
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    if KUBECTL is None:
        pytest.skip("kubectl not found")
    return {name: render(name) for name in OVERLAYS}


def workloads(objs: list[dict]) -> dict[str, dict]:
    """Deployments, StatefulSets and Jobs by name."""
    return {o["metadata"]["name"]: o for o in objs if o["kind"] in ("Deployment", "StatefulSet", "Job")}


def pod(w: dict) -> dict:
    return w["spec"]["template"]["spec"]


def labels(w: dict) -> dict:
    return w["spec"]["template"]["metadata"]["labels"]


def secrets_mounted(w: dict) -> set[str]:
    return {v["secret"]["secretName"] for v in pod(w).get("volumes", []) if "secret" in v}


def env(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


# ---- rendering and validation -----------------------------------------------------------------------------------
@needs_kubectl
def test_every_overlay_renders_and_every_object_validates_strictly(rendered):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    assert {"eve-feature", "eve-inversion", "eve-adaptive", "eve-whitebox", "gpu", "keyed"} <= set(rendered)
    seen = set()
    for name, objs in rendered.items():
        for obj in objs:
            if (text := json.dumps(obj, sort_keys=True)) in seen:  # the base's objects recur in every overlay
                continue
            seen.add(text)
            try:
                kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{name}: {obj['kind']}/{obj['metadata']['name']} does not validate against Kubernetes "
                            f"{K8S_VERSION}: {exc.message} at {'/'.join(map(str, exc.path))}")
        assert {o["metadata"].get("namespace") for o in objs if o["kind"] != "Namespace"} == {"diffsem"}, name


def test_a_broken_object_fails_validation_with_the_validators_message():
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    bad = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"ports": [{"port": "grpc"}]}}
    with pytest.raises(kubernetes_validate.ValidationError, match="grpc"):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


@needs_kubectl
def test_an_overlay_that_does_not_render_fails_with_kustomizes_message(tmp_path):
    (tmp_path / "kustomization.yaml").write_text("resources:\n  - missing.yaml\n")
    out = subprocess.run([KUBECTL, "kustomize", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "missing.yaml" in out.stderr


# ---- pods as untrusted code -------------------------------------------------------------------------------------
@needs_kubectl
def test_every_pod_is_non_root_read_only_without_capabilities_and_limited(rendered):
    for name, objs in rendered.items():
        for wname, w in workloads(objs).items():
            spec = pod(w)
            sc = spec["securityContext"]
            assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0, (name, wname)
            assert sc["seccompProfile"]["type"] == "RuntimeDefault", (name, wname)
            for c in spec.get("initContainers", []) + spec["containers"]:
                csc = c["securityContext"]
                assert csc["allowPrivilegeEscalation"] is False, (name, wname, c["name"])
                assert csc["readOnlyRootFilesystem"] is True, (name, wname, c["name"])
                assert csc["capabilities"]["drop"] == ["ALL"] and "add" not in csc["capabilities"], (name, wname)
                assert {"cpu", "memory"} <= set(c["resources"]["requests"]) <= set(c["resources"]["limits"]), \
                    (name, wname, c["name"])
            if w["kind"] != "Job":  # only the credential Jobs talk to the Kubernetes API
                assert spec["automountServiceAccountToken"] is False, (name, wname)
        ns = next(o for o in objs if o["kind"] == "Namespace")
        assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


@needs_kubectl
def test_grpc_probes_on_the_services_health_and_http_for_the_panel(rendered):
    for w in workloads(rendered["eve-feature"]).values():
        if w["kind"] == "Job":
            continue
        c = pod(w)["containers"][0]
        port = next(p["containerPort"] for p in c["ports"] if p["name"] in ("grpc", "http"))
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if w["metadata"]["name"] == "control-panel":
                assert c[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
            else:
                assert c[probe]["grpc"] == {"port": port}, (w["metadata"]["name"], probe)
                assert f"{port}" in c["args"]  # the probe asks the port the service binds


# ---- who holds what ---------------------------------------------------------------------------------------------
@needs_kubectl
def test_each_role_mounts_only_its_own_secret_and_no_pod_mounts_the_authority_key(rendered):
    own = {"channel-emulator": {"diffsem-cred-channel-emulator"}, "transmitter": {"diffsem-cred-transmitter"},
           "receiver": {"diffsem-cred-receiver"}, "control-panel": {"diffsem-cred-control-panel"}}
    for name, objs in rendered.items():
        ws = workloads(objs)
        key = {"diffsem-self-noise-key"} if name == "keyed" else set()
        for svc, secret in own.items():
            assert secrets_mounted(ws[svc]) == secret | (key if svc in ("transmitter", "receiver") else set()), (name, svc)
        for wname, w in ws.items():
            assert AUTHORITY not in secrets_mounted(w), (name, wname)
            if w["kind"] == "StatefulSet":
                assert secrets_mounted(w) == {f"diffsem-cred-{wname}"}, (name, wname)
    assert set(ROLE_FILES) == set().union(*own.values())


@needs_kubectl
def test_the_self_noise_key_reaches_only_the_transmitter_and_the_receiver(rendered):
    holders = {n for n, w in workloads(rendered["keyed"]).items() if "diffsem-self-noise-key" in secrets_mounted(w)}
    assert holders == {"transmitter", "receiver"}
    tx = pod(workloads(rendered["keyed"])["transmitter"])["containers"][0]
    assert env(tx)["DIFFSEM_SELF_NOISE"] == "keyed" and env(tx)["DIFFSEM_KEY_FILE"].startswith("/self-noise/")
    for name, objs in rendered.items():
        if name != "keyed":
            assert not any("diffsem-self-noise-key" in secrets_mounted(w) for w in workloads(objs).values()), name


@needs_kubectl
def test_black_box_eavesdroppers_get_only_the_attackers_files_and_the_white_box_one_asks_for_more(rendered):
    for overlay, attack in EVES.items():
        w = workloads(rendered[overlay])[overlay]
        assert w["kind"] == "StatefulSet" and labels(w)["diffsem.dev/role"] == "eavesdropper"
        c = pod(w)["containers"][0]
        assert env(c)["DIFFSEM_ATTACK"] == attack and env(c)["DIFFSEM_NAME"] == "$(POD_NAME)"
        assert env(c)["DIFFSEM_CREDENTIAL_FILE"] == "/credentials/$(POD_NAME).credential"
        assert "DIFFSEM_AUTH_KEY_FILE" not in env(c) and env(c)["DIFFSEM_AUTH_PINS_FILE"].endswith("control.pins")
        (init,) = pod(w)["initContainers"]
        *sources, dest = init["command"][2:]
        assert dest == "/checkpoints/" and all(m["readOnly"] for m in c["volumeMounts"] if m["name"] == "checkpoints")
        if attack == "whitebox-inversion":
            assert sources == ["/assets/checkpoints/mnist/."] and env(c)["DIFFSEM_TRANSMITTER_CHECKPOINT"]
        else:
            assert {s.rsplit("/", 1)[1] for s in sources} == BLACK_BOX_FILES, overlay
            assert "DIFFSEM_TRANSMITTER_CHECKPOINT" not in env(c)


@needs_kubectl
def test_gpu_overlay_puts_the_receiver_on_a_gpu_node_with_the_cuda_image(rendered):
    rx = pod(workloads(rendered["gpu"])["receiver"])
    c = rx["containers"][0]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1 and c["image"].startswith("diffsem-cuda")
    assert rx["nodeSelector"] and rx["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert c["args"][c["args"].index("--device") + 1] == "cuda"
    for overlay, objs in rendered.items():
        for wname, w in workloads(objs).items():
            if (overlay, wname) != ("gpu", "receiver"):
                assert all("nvidia.com/gpu" not in c["resources"]["limits"] for c in pod(w)["containers"])


# ---- network policies: the same reach per role as compose's networks ----------------------------------------------
def _selects(selector: dict, pod_labels: dict) -> bool:
    return all(pod_labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def _allows(rules: list[dict], peer_labels: dict, port: int) -> bool:
    """Whether a list of ingress or egress rules admits ``peer_labels`` (a pod in this namespace) on TCP ``port``."""
    for rule in rules:
        peers = rule.get("from", rule.get("to"))
        port_ok = "ports" not in rule or any(p["port"] == port for p in rule["ports"])
        peer_ok = peers is None or any("namespaceSelector" not in p and _selects(p.get("podSelector", {}), peer_labels)
                                       for p in peers)
        if port_ok and peer_ok:
            return True
    return False


def reach(objs: list[dict]) -> dict[str, set[tuple[str, int]]]:
    """For each workload, the (workload, port) pairs of the namespace it may open a TCP connection to."""
    policies = [o["spec"] for o in objs if o["kind"] == "NetworkPolicy"]
    ws = {n: w for n, w in workloads(objs).items() if w["kind"] != "Job"}
    ports = {n: [p["containerPort"] for c in pod(w)["containers"] for p in c.get("ports", [])] for n, w in ws.items()}
    out: dict[str, set[tuple[str, int]]] = {}
    for src, sw in ws.items():
        out[src] = set()
        for dst, dw in ws.items():
            for port in ports[dst]:
                egress = [p for p in policies if "Egress" in p["policyTypes"] and _selects(p["podSelector"], labels(sw))]
                ingress = [p for p in policies if "Ingress" in p["policyTypes"] and _selects(p["podSelector"], labels(dw))]
                if (any(_allows(p.get("egress", []), labels(dw), port) for p in egress)
                        and any(_allows(p.get("ingress", []), labels(sw), port) for p in ingress)):
                    out[src].add((dst, port))
    return out


@needs_kubectl
def test_network_policies_give_each_role_the_reach_of_the_compose_networks(rendered):
    for overlay in EVES:
        objs = rendered[overlay]
        deny = next(o["spec"] for o in objs if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "default-deny")
        assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
        r = reach(objs)
        assert r[overlay] == {("channel-emulator", 50052), ("control-panel", 50060)}, overlay  # its tap, its telemetry
        assert not any((overlay, port) in targets for targets in r.values() for port in (50054, 9100)), overlay
        assert r["transmitter"] == {("channel-emulator", 50052)}
        assert r["receiver"] == {("channel-emulator", 50052), ("control-panel", 50060)}
        assert r["control-panel"] == {("transmitter", 50051), ("channel-emulator", 50052), ("receiver", 50053)}
        assert r["channel-emulator"] == set()  # it calls no one
        dns = next(o["spec"] for o in objs if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "dns")
        assert [p["port"] for p in dns["egress"][0]["ports"]] == [53, 53]  # names resolve; nothing else by this rule


# ---- the credential Job, against a stand-in Kubernetes API ------------------------------------------------------
class _Secrets(BaseHTTPRequestHandler):
    store: dict[str, dict] = {}

    def _send(self, code: int, body: dict | None = None) -> None:
        data = json.dumps(body or {}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        name = self.path.rsplit("/", 1)[1]
        self._send(200, self.store[name]) if name in self.store else self._send(404)

    def do_POST(self) -> None:  # noqa: N802
        assert self.headers["Authorization"] == "Bearer t0ken"
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.store[body["metadata"]["name"]] = body
        self._send(201, body)

    do_PUT = do_POST

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def api():
    _Secrets.store = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Secrets)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield Api(f"http://127.0.0.1:{server.server_address[1]}", "t0ken", "diffsem")
    server.shutdown()


def held(name: str) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in _Secrets.store[name]["data"].items()}


def test_credential_job_writes_one_secret_per_role_with_only_that_roles_files(api):
    with pytest.raises(SystemExit, match="diffsem-authority does not exist yet"):
        main(["eavesdroppers", "eve-feature", "--replicas", "3"], api=api)  # before the core Job: retried later
    main(["core"], api=api)
    key = bytes.fromhex(held(AUTHORITY)["authority.key"].decode())
    verifier = auth.Verifier(key)
    assert set(held("diffsem-cred-channel-emulator")) == {"authority.key"}
    for secret, role in (("diffsem-cred-transmitter", "transmitter"), ("diffsem-cred-receiver", "receiver"),
                         ("diffsem-cred-control-panel", "control")):
        files = held(secret)
        assert set(files) == {"credential", "authority.key"}
        assert verifier.identify([(auth.METADATA_KEY, files["credential"].decode().strip())]).role == role
    main(["eavesdroppers", "eve-feature", "--replicas", "3"], api=api)
    eve = held("diffsem-cred-eve-feature")
    assert set(eve) == {"eve-feature-0.credential", "eve-feature-1.credential", "eve-feature-2.credential", "control.pins"}
    assert all(key.hex().encode() not in v for v in eve.values())  # never the key
    who = verifier.identify([(auth.METADATA_KEY, eve["eve-feature-2.credential"].decode().strip())])
    assert (who.role, who.name) == ("eavesdropper", "eve-feature-2")
    main(["core"], api=api)  # a rerun keeps the key, so issued credentials stay valid
    assert bytes.fromhex(held(AUTHORITY)["authority.key"].decode()) == key
    main(["self-noise-key"], api=api)
    first = held("diffsem-self-noise-key")["key"]
    main(["self-noise-key"], api=api)
    assert held("diffsem-self-noise-key")["key"] == first and len(bytes.fromhex(first.decode())) == 32
