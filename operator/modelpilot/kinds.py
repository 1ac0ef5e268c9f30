"""Every kind the operator reads or writes, in one table.

The table drives the API paths (kube.py), the watches and the initial LIST (handlers/wiring.py),
what the cache keeps of each object (cache.slim), which kinds a router may render and delete
(traffic), what goes with a revision that leaves the history (rollout/history.py), and a test
holds the chart's RBAC rules against it (tests/chart/test_rbac_kinds.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from . import constants as c

# Who owns the children of a kind: selected by label, re-queued on change.
OWNER_DEPLOYMENT: Final = "ModelDeployment"
OWNER_EXPORT: Final = "ModelExport"


@dataclass(frozen=True)
class Kind:
    kind: str
    api_version: str  # "apps/v1"; "v1" for the core group
    plural: str
    namespaced: bool = True
    owner: str | None = None  # None: not a child (our own CRDs, Nodes, Events)
    keep: tuple[str, ...] | None = None  # top-level fields the cache keeps; None: all
    per_revision: bool = False  # named <md>-r<N>; deleted with the revision when it leaves the history
    router: bool = False  # rendered by a traffic router (traffic/base.ROUTE_KINDS)
    watched: bool = True  # kept in the cache by a watch (Events are only written)
    carrier: bool = False  # not ours: what our routes attach to (Gateways and their classes), read whole-cluster
    narrow: str = ""  # a label selector that narrows the watch of our children further (Jobs and their Pods)
    # What the operator sends: server-side apply is a PATCH (and a create when the object is new),
    # scaling a merge PATCH; nothing is ever PUT. The chart's RBAC grants exactly these.
    verbs: tuple[str, ...] = ("get", "list", "watch", "create", "patch", "delete")
    status_verbs: tuple[str, ...] = ()  # on the status subresource

    @property
    def label_selector(self) -> str:
        """What the watch and the start-up LIST of a child kind select on the apiserver."""
        return f"{c.LABEL_MANAGED_BY}={c.MANAGED_BY}" + (f",{self.narrow}" if self.narrow else "")

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    @property
    def path_prefix(self) -> str:
        return "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"


_READ = ("get", "list", "watch")
JOB_COMPONENTS: Final = f"{c.LABEL_COMPONENT} in (export,parity)"

KINDS: Final[tuple[Kind, ...]] = (
    Kind("ModelDeployment", c.API_VERSION, "modeldeployments", verbs=_READ, status_verbs=("patch",)),
    Kind("ModelExport", c.API_VERSION, "modelexports", verbs=_READ, status_verbs=("patch",)),
    Kind("Deployment", "apps/v1", "deployments", owner=OWNER_DEPLOYMENT, keep=("metadata", "spec", "status"), per_revision=True),
    Kind("ConfigMap", "v1", "configmaps", owner=OWNER_DEPLOYMENT, keep=("metadata",), per_revision=True),
    Kind("Service", "v1", "services", owner=OWNER_DEPLOYMENT, keep=("metadata", "spec"), per_revision=True, router=True),
    Kind("PodDisruptionBudget", "policy/v1", "poddisruptionbudgets", owner=OWNER_DEPLOYMENT, keep=("metadata",), per_revision=True),
    Kind("HorizontalPodAutoscaler", "autoscaling/v2", "horizontalpodautoscalers", owner=OWNER_DEPLOYMENT, keep=("metadata",)),
    Kind("NetworkPolicy", "networking.k8s.io/v1", "networkpolicies", owner=OWNER_DEPLOYMENT, keep=("metadata",)),
    Kind("HTTPRoute", "gateway.networking.k8s.io/v1", "httproutes", owner=OWNER_DEPLOYMENT, router=True),
    Kind("VirtualService", "networking.istio.io/v1", "virtualservices", owner=OWNER_DEPLOYMENT, router=True),
    # What an HTTPRoute attaches to: whether its GatewayClass can mirror (status.supportedFeatures).
    Kind("Gateway", "gateway.networking.k8s.io/v1", "gateways", keep=("metadata", "spec"), carrier=True, verbs=_READ),
    Kind("GatewayClass", "gateway.networking.k8s.io/v1", "gatewayclasses", namespaced=False, keep=("metadata", "status"),
         carrier=True, verbs=_READ),
    # The export Jobs and the parity check Jobs (rollout/parity.py), and their Pods: never the serving pods.
    Kind("Job", "batch/v1", "jobs", owner=OWNER_EXPORT, keep=("metadata", "status"), narrow=JOB_COMPONENTS),
    Kind("Pod", "v1", "pods", owner=OWNER_EXPORT, keep=("metadata", "status"), verbs=_READ, narrow=JOB_COMPONENTS),
    Kind("Node", "v1", "nodes", namespaced=False, keep=("metadata", "spec", "status"), verbs=_READ),
    # Watched by Kopf only with watchNamespaces (to follow namespaces coming and going).
    Kind("Namespace", "v1", "namespaces", namespaced=False, watched=False, verbs=_READ),
    Kind("Event", "v1", "events", watched=False, verbs=("create",)),
)
BY_KIND: Final = {k.kind: k for k in KINDS}

CHILD_KINDS: Final = tuple(k for k in KINDS if k.owner)
CUSTOM_KINDS: Final = (OWNER_DEPLOYMENT, OWNER_EXPORT)
CARRIER_KINDS: Final = tuple(k for k in KINDS if k.carrier)
# Listed at start-up and kept current by watches: our CRDs, every child kind and the carriers.
SYNCED_KINDS: Final = tuple(k.kind for k in KINDS if k.watched and (k.owner or k.carrier or k.kind in CUSTOM_KINDS))
PER_REVISION_KINDS: Final = tuple(k.kind for k in KINDS if k.per_revision)
ROUTER_KINDS: Final = tuple(k for k in KINDS if k.router)


def get(kind: str) -> Kind:
    return BY_KIND[kind]
