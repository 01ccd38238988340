"""Every service test ends with no task and no file descriptor left behind."""

from tests.support.leaks import no_leaks

__all__ = ["no_leaks"]
