"""The offline assistant: a deterministic FunctionModel used when no model API key is set.

It understands three requests and says it is offline in every answer:

- ``balance of <account>``
- ``last transfers of <account>``
- ``move <amount> from <account> to <account>`` (a proposal, to confirm)

An account is named by its id, its external id or a part of its name (no spaces).
"""

from __future__ import annotations

import re
from typing import Any, Final

from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_core import to_jsonable_python

OFFLINE_LABEL: Final = "[offline assistant: no model configured]"
HELP: Final = (
    'I understand: "balance of <account>", "last transfers of <account>", '
    '"move <amount> from <account> to <account>".'
)
_REQUESTS: Final = (
    (re.compile(r"\bbalance of\s+(?P<account>\S+)", re.IGNORECASE), "get_balance"),
    (re.compile(r"\blast transfers of\s+(?P<account>\S+)", re.IGNORECASE), "list_transfers"),
    (
        re.compile(
            r"\bmove\s+(?P<amount>\d+(?:\.\d+)?)\s+from\s+(?P<source>\S+)\s+to\s+"
            r"(?P<destination>\S+)",
            re.IGNORECASE,
        ),
        "propose_transfer",
    ),
)


def _said(text: str) -> ModelResponse:
    return ModelResponse(parts=[TextPart(f"{OFFLINE_LABEL} {text}")])


def _call(prompt: str) -> ModelResponse:
    """The tool call a prompt asks for, or the help text."""
    for pattern, tool in _REQUESTS:
        found = pattern.search(prompt)
        if found:
            arguments = {name: value.rstrip(".?!,") for name, value in found.groupdict().items()}
            return ModelResponse(parts=[ToolCallPart(tool, arguments)])
    return _said(HELP)


def _answer(part: ToolReturnPart) -> str:
    content: Any = to_jsonable_python(part.content)
    if part.tool_name == "get_balance":
        account = content["account"]
        return (
            f"{account['name']} ({account['id']}): posted {content['posted']} "
            f"{account['currency']}, available {content['available']} {account['currency']}."
        )
    if part.tool_name == "list_transfers":
        if not content:
            return "No transfers yet."
        return "Last transfers: " + "; ".join(
            f"{t['id']} {t['amount']} {t['currency']} {t['debit_account_id']} -> "
            f"{t['credit_account_id']} ({t['status']})"
            for t in content
        )
    if part.tool_name == "propose_transfer":
        return (
            f"Proposal {content['id']}: move {content['amount_text']} {content['currency']} from "
            f"{content['source']['name']} to {content['destination']['name']}. Nothing has moved: "
            f"confirm it with POST .../proposals/{content['id']}/confirm."
        )
    return str(content)


def respond(messages: list[ModelMessage], _info: AgentInfo) -> ModelResponse:
    """Answer the last request: a tool call for a prompt, a sentence for a tool's result."""
    last = messages[-1]
    assert isinstance(last, ModelRequest)
    for part in last.parts:
        if isinstance(part, ToolReturnPart) and part.outcome != "success":  # a ModelRetry
            return _said(f"I could not do that: {part.content}")
        if isinstance(part, ToolReturnPart):
            return _said(_answer(part))
    prompts = [p.content for p in last.parts if isinstance(p, UserPromptPart)]
    return _call(prompts[-1] if prompts and isinstance(prompts[-1], str) else "")


def offline_model() -> FunctionModel:
    """The deterministic offline model (``model_name`` ``ledger-offline``)."""
    return FunctionModel(respond, model_name="ledger-offline")


__all__ = ["HELP", "OFFLINE_LABEL", "offline_model", "respond"]
