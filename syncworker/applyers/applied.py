"""What this process last applied to each object, so that a re-sync of an unchanged bundle
skips the PATCH of every object nobody changed since.

An object is skipped only when the body we would send hashes to the remembered digest AND
a LIST (metadata only, by our labels) shows the resourceVersion and uid the server answered
our last apply with: every write to an object, a ``kubectl edit`` included, bumps its
resourceVersion, and an object deleted and re-created has a new uid. Anything else is
applied, which is what corrects drift.

The bundles themselves are remembered too, parsed, by digest of their text: a re-sync
sends the same text, and parsing 1,000 YAML documents costs more than verifying them.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from syncworker.applyers.base import TransientApplyError
from syncworker.applyers.kubeapi import KubeApi, Resource
from syncworker.applyers.manifests import is_create_only, load_objects, phase_of
from syncworker.kube.kinds import group_of
from syncworker.kube.labels import MANAGED_BY_LABEL, MANAGED_BY_VALUE, SERVICE_LABEL
from syncworker.kube.refs import ObjectRef
from syncworker.kube.waves import wave_or_zero

MAX_REMEMBERED = 200_000
# ~850 bytes a manifest: 10,000 is ~8 MiB (50,000 took the apply worker past 200 MiB
# in the 10,000-service cold sync), and still holds a 1,000-object service ten times.
MAX_PARSED_OBJECTS = 10_000
LIST_PAGE_SIZE = 500
# Metadata only: a page of 500 ConfigMaps or Secrets would otherwise carry their data.
# The plain list after the comma is for servers that cannot convert (aggregated APIs).
METADATA_ACCEPT = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
METADATA_LIST_ACCEPT = (
    "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
)

#: (API group, kind, namespace, name): the version is left out, as the server keeps one
#: object whatever version it is read or written through.
Key = tuple[str, str, str, str]


def key_of(ref: ObjectRef) -> Key:
    return (group_of(ref.api_version), ref.kind, ref.namespace, ref.name)


def canonical_body(obj: dict[str, Any]) -> tuple[str, bytes]:
    """The JSON body to send and the sha256 of its canonical form (sorted keys).

    The body keeps the bundle's key order; sorting is done after a round trip through
    JSON, which makes YAML's non-string keys (``8080:`` next to ``name:``) strings first:
    sorting them as they are fails. TypeError for values JSON cannot carry.
    """
    body = json.dumps(obj, separators=(",", ":"))
    canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"))
    return body, hashlib.sha256(canonical.encode()).digest()


def selector_of(obj: dict[str, Any]) -> str | None:
    """Our label selector for the object, None when it does not carry our labels (it is
    then always applied: it cannot be listed without reading everything of its kind)."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    service = labels.get(SERVICE_LABEL)
    if labels.get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE and isinstance(service, str) and service:
        return f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE},{SERVICE_LABEL}={service}"
    return None


@dataclass(frozen=True)
class Manifest:
    """One object of a bundle, as sent. Immutable (no dict), so parsed bundles are shared
    between applies safely."""

    ref: ObjectRef
    phase: int
    body: str
    digest: bytes
    selector: str | None
    #: Created when missing, never changed (``CREATE_ONLY_ANNOTATION``).
    create_only: bool = False
    #: Its sync wave (``syncworker.kube.waves``): lower waves apply, and are healthy, first.
    wave: int = 0

    @classmethod
    def of(cls, obj: dict[str, Any]) -> Manifest:
        """ValueError for an object JSON cannot carry (``!!binary``, ``!!set``)."""
        ref = ObjectRef.of(obj)
        try:
            body, digest = canonical_body(obj)
        except TypeError as exc:
            raise ValueError(f"{ref} cannot be sent as JSON: {exc}") from exc
        phase = phase_of(ref.api_version, ref.kind)
        return cls(
            ref, phase, body, digest, selector_of(obj), is_create_only(obj), wave_or_zero(obj)
        )

    def object(self) -> dict[str, Any]:
        """A fresh copy of the object (CRDs are read back, to await them)."""
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


class ParsedBundles:
    """The manifests of recently applied bundles by sha256 of their text, at most
    ``max_objects`` manifests in all; the least recently used bundles go first."""

    def __init__(self, max_objects: int = MAX_PARSED_OBJECTS) -> None:
        self.max_objects = max_objects
        self._bundles: OrderedDict[bytes, tuple[Manifest, ...]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._bundles)

    def manifests(self, text: str) -> tuple[Manifest, ...]:
        """The bundle's manifests in bundle order; ValueError as ``load_objects`` raises."""
        digest = hashlib.sha256(text.encode()).digest()
        with self._lock:
            cached = self._bundles.get(digest)
            if cached is not None:
                self._bundles.move_to_end(digest)
                return cached
        manifests = tuple(Manifest.of(obj) for obj in load_objects(text))
        with self._lock:
            if digest not in self._bundles and len(manifests) <= self.max_objects:
                self._bundles[digest] = manifests
                self._size += len(manifests)
                while self._size > self.max_objects:
                    self._size -= len(self._bundles.popitem(last=False)[1])
        return manifests


@dataclass(frozen=True)
class Applied:
    """Our last successful apply of an object: what we sent, what the server made of it."""

    digest: bytes
    resource_version: str
    uid: str


class AppliedObjects:
    """Bounded, thread-safe memory of our last successful apply of each object; the
    least recently applied entries go first once ``max_entries`` is reached."""

    def __init__(self, max_entries: int = MAX_REMEMBERED) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._entries: OrderedDict[Key, Applied] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Key) -> Applied | None:
        with self._lock:
            return self._entries.get(key)

    def remember(self, key: Key, applied: Applied) -> None:
        with self._lock:
            self._entries[key] = applied
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def forget(self, key: Key) -> None:
        with self._lock:
            self._entries.pop(key, None)


@dataclass
class Listing:
    """What one labelled LIST found: name -> (resourceVersion, uid), and with ``full`` the
    objects themselves by name; ``problem`` when the list could not be read to the end (the
    objects it did not show are then applied)."""

    live: dict[str, tuple[str, str]] = field(default_factory=dict)
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    problem: str | None = None


def same_as_live(answer: dict[str, Any], live: dict[str, Any]) -> bool:
    """Whether a dry run's answer is the live object as a LIST showed it, to the last
    field (resourceVersion and managedFields included): then the apply would change
    nothing. The items of a LIST carry no apiVersion and kind."""

    def bare(obj: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in obj.items() if key not in ("apiVersion", "kind")}

    return bare(answer) == bare(live)


def get_live(
    api: KubeApi, resource: Resource, namespace: str, selector: str, name: str, *, full: bool
) -> Listing:
    """What ``list_live`` would find of the object ``name``, by one GET: the apiserver
    answers a GET by name from an index, while a labelled LIST walks every object of the
    kind in the namespace (10,000 services sharing one namespace made each LIST read
    40,000 ConfigMaps)."""
    listing = Listing()
    accept = "application/json" if full else METADATA_ACCEPT
    try:
        response = api.request("GET", resource.path(namespace, name), accept=accept)
    except TransientApplyError as exc:
        listing.problem = str(exc)
        return listing
    if response.status == 404:
        return listing
    if response.status != 200:
        listing.problem = response.message()
        return listing
    try:
        item = response.json()
    except ValueError:
        listing.problem = f"HTTP {response.status}: the answer is not JSON"
        return listing
    meta = item.get("metadata") or {}
    labels = meta.get("labels") or {}
    wanted = dict(pair.split("=", 1) for pair in selector.split(","))
    version, uid = meta.get("resourceVersion"), meta.get("uid")
    # An object without our labels is not one the LIST would show.
    if version and uid and all(labels.get(k) == v for k, v in wanted.items()):
        listing.live[name] = (version, uid)
        if full:
            listing.objects[name] = item
    return listing


def list_live(
    api: KubeApi, resource: Resource, namespace: str, selector: str, *, full: bool = False
) -> Listing:
    """Every object of ``resource`` in ``namespace`` carrying ``selector``, page by page;
    metadata only unless ``full``."""
    path = resource.collection(namespace)
    query = {"labelSelector": selector, "limit": str(LIST_PAGE_SIZE)}
    accept = "application/json" if full else METADATA_LIST_ACCEPT
    listing = Listing()
    while True:
        try:
            response = api.request("GET", path, query=query, accept=accept)
        except TransientApplyError as exc:  # a CRD just made may not be listable yet
            listing.problem = str(exc)
            return listing
        if response.status == 406 and accept != "application/json":
            accept = "application/json"  # refused despite the fallback in Accept: plain list
            continue
        if response.status != 200:
            # 403 (no list right), 410 (continue token expired), ...: not an apply error,
            # the unverified objects are simply applied.
            listing.problem = response.message()
            return listing
        try:
            body = response.json()
        except ValueError:
            listing.problem = f"HTTP {response.status}: the answer is not JSON"
            return listing
        for item in body.get("items") or []:
            meta = item.get("metadata") or {}
            name, version, uid = meta.get("name"), meta.get("resourceVersion"), meta.get("uid")
            if name and version and uid:
                listing.live[name] = (version, uid)
                if full:
                    listing.objects[name] = item
        token = (body.get("metadata") or {}).get("continue")
        if not token:
            return listing
        query = {**query, "continue": token}
