"""Check a tenant's ledger against its invariants (tests, the benchmark, an operator's audit).

:func:`check_invariants` reads every record of the tenant and returns the violations found,
as sentences (an empty list: the ledger is consistent):

- per currency, the debits and credits of all accounts are equal, posted and pending apart
  (the sum of all balances is zero);
- each account's cached totals equal a replay of its journal, whose entries are numbered
  1..n without gaps and each carry the totals after them;
- a constrained account satisfies its flag (never negative);
- each transfer's entries add up to its state: pending reserves its amount, posted moves its
  posted amount (never more than it reserved, and it was resolved at most once), voided
  moves nothing;
- a reversal and its original point at each other, and no transfer is reversed twice;
- a linked batch is all there or not at all;
- each change of a transfer has exactly one outbox event (``transfer.created``; then
  ``transfer.posted``, ``transfer.voided`` or ``transfer.expired`` for a pending one;
  ``transfer.reversed`` once reversed), and no event names a transfer that is absent.

Read it while writers are idle: a transfer committing between two reads can look like a
violation.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from ledger.domain.balances import BalanceState
from ledger.domain.errors import Contention
from ledger.store import (
    Plan,
    Query,
    balances_partition,
    batches_partition,
    entries_partition,
    run_async,
    run_sync,
    state_from_record,
    transfers_partition,
)
from ledger.webhooks.outbox import EventType, events_partition
from stalwart.resilience import retry
from stalwart.storage import AsyncStore, Page, Record, Store

_PAGE = 1000
_ONE_ATTEMPT = retry(on=Contention, attempts=1)  # the audit only reads: nothing to retry


def _all_records(partition: str) -> Plan[list[Record]]:
    records: list[Record] = []
    cursor: str | None = None
    while True:
        page: Page = yield Query(partition, _PAGE, cursor)
        records.extend(page.records)
        cursor = page.cursor
        if cursor is None:
            return records


@dataclass
class _Moved:
    """What one transfer's entries did to one side of one account."""

    pending: int = 0
    posted: int = 0


@dataclass
class _Audit:
    violations: list[str] = field(default_factory=list)
    moved: dict[tuple[str, str, str], _Moved] = field(
        default_factory=lambda: defaultdict(_Moved)
    )  # (transfer id, account id, side)

    def fail(self, message: str) -> None:
        self.violations.append(message)


def _check_sums(audit: _Audit, states: list[BalanceState]) -> None:
    sums: dict[str, Counter[str]] = defaultdict(Counter)
    for state in states:
        sums[state.currency]["posted"] += state.debits_posted - state.credits_posted
        sums[state.currency]["pending"] += state.debits_pending - state.credits_pending
    for currency, totals in sorted(sums.items()):
        for kind in ("posted", "pending"):
            if totals[kind]:
                audit.fail(f"{currency}: {kind} debits minus credits is {totals[kind]}, not 0")


def _check_constraints(audit: _Audit, state: BalanceState) -> None:
    debits = state.debits_pending + state.debits_posted
    credits_ = state.credits_pending + state.credits_posted
    if state.debits_must_not_exceed_credits and debits > state.credits_posted:
        audit.fail(f"account {state.account_id}: debits {debits} exceed posted credits")
    if state.credits_must_not_exceed_debits and credits_ > state.debits_posted:
        audit.fail(f"account {state.account_id}: credits {credits_} exceed posted debits")


def _check_journal(audit: _Audit, state: BalanceState, entries: list[Record]) -> None:
    account = state.account_id
    seqs = [int(record.key.sort) for record in entries]
    if seqs != list(range(1, state.entry_count + 1)):
        audit.fail(f"account {account}: entries {seqs[:5]}... are not 1..{state.entry_count}")
    replay = {"debits_pending": 0, "debits_posted": 0, "credits_pending": 0, "credits_posted": 0}
    for record in entries:
        data = record.data
        side = "debits" if data["side"] == "debit" else "credits"
        replay[f"{side}_pending"] += data["pending_delta"]
        replay[f"{side}_posted"] += data["posted_delta"]
        if data["balance_after"] != replay:
            audit.fail(f"account {account}: entry {record.key.sort}'s balance_after is wrong")
        moved = audit.moved[data["transfer_id"], account, data["side"]]
        moved.pending += data["pending_delta"]
        moved.posted += data["posted_delta"]
    cached = {name: getattr(state, name) for name in replay}
    if cached != replay:
        audit.fail(f"account {account}: cached totals {cached} != journal replay {replay}")


def _check_transfer(audit: _Audit, data: dict[str, object]) -> None:
    tid = str(data["id"])
    amount, posted_amount = data["amount"], data["posted_amount"]
    assert isinstance(amount, int)
    assert isinstance(posted_amount, int)
    expected = {
        "pending": _Moved(pending=amount),
        "posted": _Moved(posted=posted_amount),
        "voided": _Moved(),
    }[str(data["status"])]
    if not 0 <= posted_amount <= amount:
        audit.fail(f"transfer {tid}: posted {posted_amount} of {amount}")
    for account, side in (
        (data["debit_account_id"], "debit"),
        (data["credit_account_id"], "credit"),
    ):
        moved = audit.moved.pop((tid, str(account), side), _Moved())
        if moved != expected:
            audit.fail(f"transfer {tid} ({data['status']}): the {side} entries moved {moved}")


def _check_links(audit: _Audit, transfers: dict[str, dict[str, object]]) -> None:
    reversals = Counter(t["reverses"] for t in transfers.values() if t["reverses"] is not None)
    for original, count in reversals.items():
        if count > 1:
            audit.fail(f"transfer {original} was reversed {count} times")
    for tid, data in transfers.items():
        reversal = data["reversed_by"]
        if reversal is not None and transfers.get(str(reversal), {}).get("reverses") != tid:
            audit.fail(f"transfer {tid}: reversed_by {reversal} does not point back")
        original = data["reverses"]
        if original is not None and transfers.get(str(original), {}).get("reversed_by") != tid:
            audit.fail(f"reversal {tid}: its original {original} does not point back")


def _expected_events(data: dict[str, object]) -> set[frozenset[str]]:
    """The events one transfer's changes wrote, each as the set of types it may have (a
    voided transfer with a timeout may have been voided or expired)."""
    expected: set[frozenset[str]] = {frozenset({EventType.CREATED})}
    if data["pending"] and data["status"] == "posted":
        expected.add(frozenset({EventType.POSTED}))
    if data["status"] == "voided":
        expected.add(frozenset({EventType.VOIDED, EventType.EXPIRED}))
    if data["reversed_by"] is not None:
        expected.add(frozenset({EventType.REVERSED}))
    return expected


def _check_outbox(
    audit: _Audit, transfers: dict[str, dict[str, object]], events: list[Record]
) -> None:
    written: dict[str, Counter[str]] = defaultdict(Counter)
    for record in events:
        written[record.data["transfer"]["id"]][record.data["type"]] += 1
    for tid in written.keys() - transfers.keys():
        audit.fail(f"events {sorted(written[tid])} name transfer {tid}, which is absent")
    for tid, data in transfers.items():
        found = written.get(tid, Counter())
        for types in _expected_events(data):
            count = sum(found[t] for t in types)
            if count != 1:
                audit.fail(f"transfer {tid}: {count} events of {sorted(types)}, not 1")
        unexpected = set(found) - set().union(*_expected_events(data))
        if unexpected:
            audit.fail(f"transfer {tid}: unexpected events {sorted(unexpected)}")


def invariants_plan(tenant: str) -> Plan[list[str]]:
    """The violations of ``tenant``'s ledger (see the module docstring)."""
    audit = _Audit()
    states = [state_from_record(r) for r in (yield from _all_records(balances_partition(tenant)))]
    _check_sums(audit, states)
    for state in states:
        _check_constraints(audit, state)
        entries = yield from _all_records(entries_partition(tenant, state.account_id))
        _check_journal(audit, state, entries)
    transfer_records = yield from _all_records(transfers_partition(tenant))
    transfers = {record.key.sort: record.data for record in transfer_records}
    for data in transfers.values():
        _check_transfer(audit, data)
    for tid, account, side in audit.moved:
        audit.fail(f"entries of account {account} ({side}) name transfer {tid}, which is absent")
    _check_links(audit, transfers)
    batches = {r.key.sort: r.data for r in (yield from _all_records(batches_partition(tenant)))}
    for batch_id, batch in batches.items():
        missing = [tid for tid in batch["transfer_ids"] if tid not in transfers]
        if missing:
            audit.fail(f"batch {batch_id}: transfers {missing} are missing")
    for tid, data in transfers.items():
        if data["batch_id"] is not None and tid not in batches.get(str(data["batch_id"]), {}).get(
            "transfer_ids", ()
        ):
            audit.fail(f"transfer {tid}: its batch {data['batch_id']} does not list it")
    _check_outbox(audit, transfers, (yield from _all_records(events_partition(tenant))))
    return audit.violations


def check_invariants(store: Store, tenant: str) -> list[str]:
    """The violations of ``tenant``'s ledger on a sync store; ``[]`` when consistent."""
    return run_sync(store, lambda: invariants_plan(tenant), policy=_ONE_ATTEMPT)


async def check_invariants_async(store: AsyncStore, tenant: str) -> list[str]:
    """See :func:`check_invariants`."""
    return await run_async(store, lambda: invariants_plan(tenant), policy=_ONE_ATTEMPT)
