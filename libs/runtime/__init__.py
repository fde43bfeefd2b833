"""The service runtime: declare a service once, run it alone or embedded with the others."""

from libs.runtime.process import main, run_main, serve
from libs.runtime.service import Check, Runtime, Service, ServiceFactory, Shared

__all__ = ["Check", "Runtime", "Service", "ServiceFactory", "Shared", "main", "run_main", "serve"]
