"""The base of every settings section (:mod:`streamml.config`), and of the sections of a server with one account per
program: which account this process signs in as, every program's password, and the variables that hand a program
its own."""

from __future__ import annotations

from typing import ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from streamml.errors import ConfigError


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Accounts(Section):
    """A server with one account per program. Of :data:`FIELDS`, the first two sign this process in (in .env, the
    admin's); the third holds every program's password (in .env too), so the stack can create the accounts and hand
    each program its own."""

    ACCOUNTS: ClassVar[tuple[str, ...]]  # the program accounts (names.py)
    FIELDS: ClassVar[tuple[str, str, str]] = ("user", "password", "program_passwords")

    def program_secrets(self) -> dict[str, SecretStr]:
        secrets: dict[str, SecretStr] = getattr(self, self.FIELDS[2])
        return secrets

    @model_validator(mode="after")
    def _known_programs(self) -> Self:
        unknown = sorted(set(self.program_secrets()) - set(self.ACCOUNTS))
        if unknown:
            raise ValueError(f"no program account {', '.join(unknown)}; known: {', '.join(self.ACCOUNTS)}")
        return self

    def env_name(self, field: str, account: str | None = None) -> str:
        section = type(self).__name__.removesuffix("Settings").upper()
        return f"STREAMML_{section}__{field.upper()}" + (f"__{account.upper()}" if account else "")

    def require_programs(self) -> None:
        """Raise unless every program account has its password (what creating the accounts needs)."""
        missing = [self.env_name(self.FIELDS[2], a) for a in self.ACCOUNTS if a not in self.program_secrets()]
        if missing:
            raise ConfigError(f"not set: {', '.join(missing)}; ./run.sh setup generates them into .env")

    def as_account(self, account: str) -> Self:
        """These settings signed in as program ``account`` (its password from the programs' field)."""
        user, password, programs = self.FIELDS
        secret = self.program_secrets().get(account)
        if secret is None:
            raise ConfigError(f"{self.env_name(programs, account)} is not set; ./run.sh setup generates it")
        return self.model_copy(update={user: account, password: secret})

    def account_env(self, account: str) -> dict[str, str]:
        """The variables that sign a program in as ``account`` instead of .env's admin."""
        user, password, _ = self.FIELDS
        own = self.as_account(account)
        return {self.env_name(user): account, self.env_name(password): getattr(own, password).get_secret_value()}


class UserAccounts(Accounts):
    """The servers whose accounts are a user name and a password (Kafka's SASL, MLflow's basic auth)."""

    user: str = Field(
        "admin",
        pattern=r"^[a-z][a-z0-9-]{0,31}$",
        description="The account this process signs in as; each program that uses the server gets its own (its "
        "password from program_passwords), the rest (CLI, tests, the stack's setup) use the admin.",
    )
    password: SecretStr = Field(
        SecretStr(""),
        description="Password of `user`; in .env the admin's. Empty: this process has no account there (a Compose "
        "service that does not use the server).",
    )
    program_passwords: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Passwords of the programs' accounts by name (STREAMML_KAFKA__PROGRAM_PASSWORDS__SCORER, ...); "
        "the stack creates each with its rights (streamml.streaming.acl, streamml.stores.mlflow_auth).",
    )
