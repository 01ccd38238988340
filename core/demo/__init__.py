"""The demo apiserver: a stand-in Kubernetes apiserver the real kubectl accepts."""

from core.demo.apiserver import DemoApiServer

__all__ = ["DemoApiServer"]
