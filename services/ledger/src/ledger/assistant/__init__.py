"""The ledger's assistant (issue 14): questions about your ledger in plain words, on
``stalwart.agents``. See the Assistant section of docs/ledger.md.

- :mod:`ledger.assistant.service`: the agent, its conversations per tenant (pydantic-ai);
- :mod:`ledger.assistant.tools`: what it can do, as the caller's tenant only;
- :mod:`ledger.assistant.offline`: the deterministic model used without a model key;
- :mod:`ledger.assistant.proposals`: transfers it proposed, made on confirmation.

Nothing is imported here: the API imports ``proposals`` at start-up and the rest on first use.
"""
