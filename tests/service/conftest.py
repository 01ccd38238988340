"""Every service test ends with no task and no file descriptor left behind."""

from tests.aio.conftest import no_leaks

__all__ = ["no_leaks"]
