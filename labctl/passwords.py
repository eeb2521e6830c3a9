"""A lab's secrets as typed values: DevStack's four passwords of the lab, and each classroom seat's own
(the same four, and the trainee's login). Read from and written to secrets.yaml by labctl.state;
generated here. Pure but for the random numbers; depends on no feature.

Letters and digits only: DevStack pastes passwords into shell lines and connection URLs.
"""

from __future__ import annotations

import secrets as random
import string
from collections.abc import Mapping
from dataclasses import astuple, dataclass, fields

PASSWORD_NAMES = ("admin", "database", "rabbit", "service")
SEAT_SECRET_NAMES = (*PASSWORD_NAMES, "login")
_ALPHABET = string.ascii_letters + string.digits
# What trainees read off paper and type: no 0/O, 1/l/I, no symbols a keyboard layout moves.
READABLE_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
READABLE_LENGTH = 12  # about 59 bits


def generate_password() -> str:
    return "".join(random.choice(_ALPHABET) for _ in range(24))


def readable_password() -> str:
    return "".join(random.choice(READABLE_ALPHABET) for _ in range(READABLE_LENGTH))


def _valid(value: object) -> bool:
    return isinstance(value, str) and value.isalnum() and value.isascii()


@dataclass(frozen=True)
class Passwords:
    """DevStack's passwords (ADMIN_PASSWORD, DATABASE_PASSWORD, RABBIT_PASSWORD, SERVICE_PASSWORD)."""

    admin: str
    database: str
    rabbit: str
    service: str

    @classmethod
    def generate(cls) -> Passwords:
        return cls(*(generate_password() for _ in PASSWORD_NAMES))

    @classmethod
    def from_raw(cls, raw: object) -> Passwords | None:
        """From secrets.yaml's mapping; None when a password is missing or not letters and digits."""
        names = [f.name for f in fields(cls)]
        if not isinstance(raw, Mapping) or not all(_valid(raw.get(n)) for n in names):
            return None
        return cls(*(str(raw[n]) for n in names))

    def devstack(self) -> Passwords:
        """The four DevStack passwords alone."""
        return Passwords(self.admin, self.database, self.rabbit, self.service)

    def as_dict(self) -> dict[str, str]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def values(self) -> tuple[str, ...]:
        """Every secret it holds (to mask in logs, or to look for where it must not be)."""
        return tuple(str(v) for v in astuple(self))


@dataclass(frozen=True)
class SeatSecrets(Passwords):
    """A classroom seat's own: DevStack's passwords, and the trainee's SSH login (`stack`)."""

    login: str

    @classmethod
    def generate(cls) -> SeatSecrets:
        """What trainees type (admin, login) is readable; the rest is never typed."""
        return cls(admin=readable_password(), database=generate_password(), rabbit=generate_password(),
                   service=generate_password(), login=readable_password())


@dataclass(frozen=True)
class LabSecrets:
    """All of a lab's secrets: the lab's passwords, and each seat's own (by seat name)."""

    passwords: Passwords
    seats: Mapping[str, SeatSecrets]

    def for_machine(self, machine: str) -> Passwords:
        """DevStack's passwords on `machine`: its seat's own in a classroom, else the lab's."""
        own = self.seats.get(machine)
        return own.devstack() if own is not None else self.passwords

    def values(self) -> tuple[str, ...]:
        return (*self.passwords.values(), *(v for own in self.seats.values() for v in own.values()))
