"""Renders the Helm chart with a real Helm (the Helm Go SDK through `helm-python-sdk`) for the
default values and two other value sets, validates every manifest against the Kubernetes 1.37
schemas (`kubernetes-validate`, strict: unknown fields are errors), checks what the chart
promises (security context, probes, volumes, scaling objects), and runs `weir check` on the
gateway configuration each rendering produces. The plain manifests get the same checks.

usage: check_manifests.py WEIR_BINARY REPO_ROOT
Prints one line per checked rendering; exits 1 with every failure listed.
"""

import os
import re
import subprocess
import sys
import tempfile

import helm_python
import kubernetes_validate
import yaml

K8S_VERSION = "1.37"
WEIR, ROOT = sys.argv[1], sys.argv[2]
CHART = os.path.join(ROOT, "deploy/helm/weir")
PLAIN = os.path.join(ROOT, "deploy/kubernetes/weir.yaml")
BUILT_PLUGINS = os.path.join(ROOT, "plugins/target/wasm32-wasip2/release")

failures = []


def fail(where, msg):
    failures.append(f"{where}: {msg}")


PRODUCTION = {
    "replicaCount": 4,
    "autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 12},
    "redis": {"mode": "external", "url": "redis://redis.shared.svc:6379/2"},
    "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
    "admin": {"existingSecret": "weir-admin-token"},
    "secrets": {
        "OPENAI_KEY": {"secretName": "llm-keys", "key": "openai"},
        "ANTHROPIC_KEY": {"secretName": "llm-keys", "key": "anthropic", "as": "env"},
    },
    "config": """
[plugins.llm-gateway]
path = "/usr/lib/weir/plugins/llm-gateway.wasm"
capabilities = { kv = "llm", outbound = ["openai"], secrets = ["OPENAI_KEY"], metrics = true }

[plugins.rate-limit]
path = "/usr/lib/weir/plugins/rate-limit.wasm"
instances = "pooled"
capabilities = { kv = "limits" }

[upstreams.openai]
endpoints = ["https://api.openai.com"]

[[routes]]
name = "llm"
upstream = "openai"
chain = [
  { plugin = "rate-limit", config = { burst = 20, rate_per_second = 5 } },
  { plugin = "llm-gateway", config = { providers = { openai = { upstream = "openai", format = "openai", secret = "OPENAI_KEY" } }, models = { "gpt-4o-mini" = [{ provider = "openai", model = "gpt-4o-mini" }] } } },
]
""",
    "topologySpreadConstraints": [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "weir"}},
        }
    ],
}

TRIAL = {
    "replicaCount": 3,
    "redis": {"mode": "deploy"},
    "podDisruptionBudget": {"enabled": False},
    "service": {"type": "LoadBalancer"},
    "admin": {"unauthenticatedProbes": False},
}


def render(values):
    chart = helm_python.Chart.load(CHART)
    try:
        out = chart.render(values, name="weir", namespace="gateway", is_install=True)
    finally:
        chart.close()
    docs = []
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def by_kind(docs, kind):
    return [d for d in docs if d.get("kind") == kind]


def validate(where, docs):
    for d in docs:
        name = f"{d.get('kind')}/{d.get('metadata', {}).get('name')}"
        if d.get("apiVersion", "").startswith("monitoring.coreos.com/"):
            # A CRD: no schema in Kubernetes' own; its fields are checked below.
            continue
        try:
            kubernetes_validate.validate(d, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            fail(where, f"{name} does not validate against Kubernetes {K8S_VERSION}: {e.message} at {list(e.path)}")
        except Exception as e:  # an unknown kind or version is a failure too
            fail(where, f"{name}: {e}")


def check_pod(where, deployment):
    spec = deployment["spec"]["template"]["spec"]
    pod_sc = spec.get("securityContext", {})
    if pod_sc.get("runAsNonRoot") is not True:
        fail(where, "the pod may run as root")
    (c,) = [c for c in spec["containers"] if c["name"] == "weir"]
    sc = c.get("securityContext", {})
    for key, want in [("readOnlyRootFilesystem", True), ("allowPrivilegeEscalation", False)]:
        if sc.get(key) is not want:
            fail(where, f"container securityContext.{key} is not {want}")
    if sc.get("capabilities", {}).get("drop") != ["ALL"]:
        fail(where, "capabilities are not all dropped")
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    for probe, path in [("livenessProbe", "/health"), ("readinessProbe", "/ready"), ("startupProbe", "/ready")]:
        get = c.get(probe, {}).get("httpGet", {})
        if get.get("path") != path or get.get("port") != "admin":
            fail(where, f"{probe} is not GET {path} on the admin port: {get}")
    if "sleep" not in c.get("lifecycle", {}).get("preStop", {}):
        fail(where, "no preStop delay: a pod would close its listener while endpoints still send to it")
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    config = mounts.get("/etc/weir")
    if not config or "subPath" in config:
        fail(where, "the config must be mounted as a directory (a subPath mount never sees ConfigMap updates)")
    if "/var/cache" not in mounts:
        fail(where, "no writable cache volume for compiled plugins")
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    if env.get("XDG_CACHE_HOME") != "/var/cache":
        fail(where, "XDG_CACHE_HOME does not point at the cache volume")
    return ports


def gateway_toml(docs):
    (cm,) = [d for d in by_kind(docs, "ConfigMap") if "gateway.toml" in d.get("data", {})]
    return cm["data"]["gateway.toml"]


def weir_check(where, toml):
    """`weir check` on the rendered config, with the pod's paths mapped into a temp dir."""
    with tempfile.TemporaryDirectory() as tmp:
        secrets = os.path.join(tmp, "secrets")
        for name, key in re.findall(r'/var/run/secrets/weir/([^/"]+)/([^/"]+)"', toml):
            os.makedirs(os.path.join(secrets, name), exist_ok=True)
            with open(os.path.join(secrets, name, key), "w") as f:
                f.write(f"value-of-{name}\n")
        toml = toml.replace("/var/run/secrets/weir/", secrets + "/")
        toml = toml.replace("/var/cache/", os.path.join(tmp, "cache") + "/")
        toml = re.sub(
            r'/usr/lib/weir/plugins/([a-z0-9-]+)\.wasm',
            lambda m: os.path.join(BUILT_PLUGINS, m.group(1).replace("-", "_") + ".wasm"),
            toml,
        )
        path = os.path.join(tmp, "gateway.toml")
        with open(path, "w") as f:
            f.write(toml)
        env = dict(os.environ)
        for name in re.findall(r'^(\w+) = \{ env = "\w+" \}', toml, re.M):
            env[name] = f"value-of-{name}"
        r = subprocess.run([WEIR, "check", "--config", path], capture_output=True, text=True, timeout=300, env=env)
        if r.returncode != 0:
            fail(where, f"weir check refused the rendered config:\n{r.stdout}{r.stderr}\n--- config ---\n{toml}")


def check_default():
    where = "chart, default values"
    docs = render({})
    validate(where, docs)
    (dep,) = by_kind(docs, "Deployment")
    check_pod(where, dep)
    if dep["spec"].get("replicas") != 2:
        fail(where, f"replicas {dep['spec'].get('replicas')}, expected the default 2")
    if by_kind(docs, "HorizontalPodAutoscaler") or by_kind(docs, "ServiceMonitor"):
        fail(where, "autoscaler or ServiceMonitor rendered while disabled")
    if len(by_kind(docs, "PodDisruptionBudget")) != 1:
        fail(where, "no PodDisruptionBudget")
    (secret,) = by_kind(docs, "Secret")
    if len(secret["data"]["token"]) < 40:
        fail(where, "the generated admin token is too short")
    toml = gateway_toml(docs)
    if "[kv]" in toml:
        fail(where, "[kv] rendered with redis.mode none")
    weir_check(where, toml)
    return f"{len(docs)} manifests"


def check_production():
    where = "chart, production values"
    docs = render(PRODUCTION)
    validate(where, docs)
    (dep,) = by_kind(docs, "Deployment")
    check_pod(where, dep)
    if "replicas" in dep["spec"]:
        fail(where, "replicas set on the Deployment while the autoscaler owns it")
    (hpa,) = by_kind(docs, "HorizontalPodAutoscaler")
    if (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) != (3, 12):
        fail(where, f"autoscaler bounds {hpa['spec']}")
    (sm,) = by_kind(docs, "ServiceMonitor")
    ep = sm["spec"]["endpoints"][0]
    if ep["port"] != "admin" or ep["path"] != "/metrics" or ep["authorization"]["credentials"]["name"] != "weir-admin-token":
        fail(where, f"ServiceMonitor endpoint {ep}")
    if by_kind(docs, "Secret"):
        fail(where, "an admin Secret was made although admin.existingSecret names one")
    volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    if volumes.get("secret-openai-key", {}).get("secret", {}).get("secretName") != "llm-keys":
        fail(where, f"the OPENAI_KEY Secret is not mounted: {sorted(volumes)}")
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in c["env"]}
    ref = env.get("ANTHROPIC_KEY", {}).get("valueFrom", {}).get("secretKeyRef", {})
    if ref != {"name": "llm-keys", "key": "anthropic"} or "secret-anthropic-key" in volumes:
        fail(where, f"ANTHROPIC_KEY is not passed from its Secret as an environment variable: {ref}")
    toml = gateway_toml(docs)
    if 'ANTHROPIC_KEY = { env = "ANTHROPIC_KEY" }' not in toml:
        fail(where, "the env secret is not in [secrets]")
    if 'url = "redis://redis.shared.svc:6379/2"' not in toml:
        fail(where, "the external Redis URL is not in [kv]")
    weir_check(where, toml)
    return f"{len(docs)} manifests"


def check_trial():
    where = "chart, trial values"
    docs = render(TRIAL)
    validate(where, docs)
    deps = {d["metadata"]["name"]: d for d in by_kind(docs, "Deployment")}
    if set(deps) != {"weir", "weir-redis"}:
        fail(where, f"deployments {sorted(deps)}, expected weir and weir-redis")
    check_pod(where, deps["weir"])
    if deps["weir"]["spec"]["replicas"] != 3:
        fail(where, "replicaCount not applied")
    if by_kind(docs, "PodDisruptionBudget"):
        fail(where, "PodDisruptionBudget rendered while disabled")
    toml = gateway_toml(docs)
    if 'url = "redis://weir-redis:6379"' not in toml or "unauthenticated_probes = false" not in toml:
        fail(where, "the deployed Redis or the probes setting is not in the config")
    weir_check(where, toml)
    return f"{len(docs)} manifests"


def check_bad_values():
    where = "chart, invalid values"
    try:
        render({"redis": {"mode": "external"}})
        fail(where, "redis.mode external without a url rendered")
    except helm_python.HelmError as e:
        if "set redis.url" not in str(e):
            fail(where, f"unclear error: {e}")
    return "refused with a message naming redis.url"


def check_lint():
    report = helm_python.lint(CHART, strict=True, kube_version=f"v{K8S_VERSION}.0")
    errors = [m for m in report["messages"] if m["severity"] >= 2] + [{"error": e} for e in report["errors"]]
    for m in errors:
        fail("helm lint --strict", m["error"])
    return f"{len(report['messages'])} messages, {len(errors)} warnings or errors"


def check_plain():
    where = "deploy/kubernetes/weir.yaml"
    with open(PLAIN) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    validate(where, docs)
    (dep,) = by_kind(docs, "Deployment")
    check_pod(where, dep)
    weir_check(where, gateway_toml(docs))
    return f"{len(docs)} manifests"


for name, check in [
    ("helm lint", check_lint),
    ("default values", check_default),
    ("production values", check_production),
    ("trial values", check_trial),
    ("invalid values", check_bad_values),
    ("plain manifests", check_plain),
]:
    before = len(failures)
    try:
        summary = check()
    except Exception as e:
        fail(name, f"{type(e).__name__}: {e}")
        summary = "error"
    print(f"{name}: {summary}: {'ok' if len(failures) == before else 'FAILED'}")

if failures:
    print("\n".join(failures), file=sys.stderr)
    sys.exit(1)
