"""Why a message could not be decoded.

    ContractError                 anything wrong with bytes claimed to be a message
    ├── MalformedMessage          not JSON, not an envelope, or a payload that fails its schema
    ├── UnknownMessageType        a `type` no contract defines
    └── UnsupportedVersion        a known `type` at a major `version` this code does not speak

Every one of them is permanent: the bus dead-letters the message with `str(error)` as the reason.
"""


class ContractError(ValueError):
    """Bytes that are not a message this code understands."""


class MalformedMessage(ContractError):
    pass


class UnknownMessageType(ContractError):
    pass


class UnsupportedVersion(ContractError):
    pass
