"""A reference to one object on a cluster."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, order=True)
class ObjectRef:
    """One object on a cluster, as the inventory records it."""

    api_version: str
    kind: str
    namespace: str
    name: str

    @classmethod
    def of(cls, obj: dict[str, Any]) -> ObjectRef:
        """A hook named by ``generateName`` alone is referred to by that prefix."""
        meta = obj.get("metadata") or {}
        name = meta.get("name") or meta["generateName"]
        return cls(obj["apiVersion"], obj["kind"], meta.get("namespace") or "", name)

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def identity(self) -> tuple[str, str, str, str]:
        """The object whatever its apiVersion: group, kind, namespace, name (a version
        bump is the same object)."""
        return (self.group, self.kind, self.namespace, self.name)

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"
