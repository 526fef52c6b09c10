"""What a role needs on each legacy store and how a role's privileges are judged (domain/privileges.py)."""

from __future__ import annotations

from domain.privileges import Observed, TablePrivileges, findings, grants_sql, needs


def exactly_what_is_needed(store: str) -> dict[str, TablePrivileges]:
    return {n.name: TablePrivileges(select=True, delete=n.delete, update=frozenset(n.update),
                                    insert=frozenset(n.insert)) for n in needs(store)}


def test_the_role_may_update_only_the_columns_rules_v1_writes_with_their_bookkeeping():
    billing = {n.name: n for n in needs("billing_prod")}
    assert billing["invoices"].update == ("status", "amount_paid", "updated_at") and not billing["invoices"].insert
    assert billing["dunning"].update == ("stage", "stage_since", "updated_at")
    assert billing["charges"].update == billing["schedules"].update == () and not billing["charges"].insert
    assert [n.name for n in needs("subs") if n.delete] == ["subs_customer"]


def test_a_new_subs_customer_row_names_no_id_and_takes_it_from_its_sequence():
    customer = next(n for n in needs("subs") if n.name == "subs_customer")
    assert "id" not in customer.insert and customer.sequence == "subs_customer_id_seq"


def test_grants_sql_grants_column_updates_and_never_a_table_wide_write():
    text = grants_sql("recompute", "billing_prod")
    assert "GRANT UPDATE (status, amount_paid, updated_at) ON invoices TO recompute;" in text
    assert "charges TO recompute;" in text and "GRANT SELECT ON charges" in text
    assert not any(line.startswith(("GRANT UPDATE ON", "GRANT INSERT ON", "GRANT ALL")) for line in text.splitlines())
    assert 'TO "Odd Role";' in grants_sql("Odd Role", "cf_prod")


def test_exactly_the_needed_privileges_give_no_finding():
    for store in ("cf_prod", "billing_prod", "subs"):
        observed = Observed(role="r", replication=True, tables=exactly_what_is_needed(store))
        assert findings(store, observed, streams=True) == []


def test_a_missing_column_grant_is_an_error_naming_the_column():
    tables = exactly_what_is_needed("billing_prod")
    tables["invoices"] = TablePrivileges(select=True, update=frozenset({"status", "updated_at"}))
    [finding] = findings("billing_prod", Observed(role="r", tables=tables), streams=False)
    assert finding.line() == "error: billing_prod.invoices: role r lacks UPDATE (amount_paid)"


def test_replication_is_needed_only_for_a_store_with_a_change_stream():
    observed = Observed(role="r", tables=exactly_what_is_needed("subs"))
    assert findings("subs", observed, streams=False) == []
    assert [f.level for f in findings("subs", observed, streams=True)] == ["error"]


def test_a_superuser_an_owner_and_a_never_written_column_are_warnings():
    superuser = findings("cf_prod", Observed(role="postgres", superuser=True, tables=exactly_what_is_needed("cf_prod")),
                         streams=True)
    assert [f.level for f in superuser] == ["warning"]
    tables = exactly_what_is_needed("billing_prod")
    tables["charges"] = TablePrivileges(select=True, owner=True)
    tables["invoices"] = TablePrivileges(select=True, update=frozenset({"status", "amount_paid", "updated_at",
                                                                        "amount_due"}))
    lines = [f.line() for f in findings("billing_prod", Observed(role="r", tables=tables), streams=False)]
    assert lines == ["warning: billing_prod.invoices: role r may UPDATE (amount_due), which recompute never writes",
                     "warning: billing_prod.charges: role r owns the table: it may write any column"]


def test_a_missing_table_is_an_error():
    tables = exactly_what_is_needed("cf_prod")
    del tables["product_config"]
    assert [f.line() for f in findings("cf_prod", Observed(role="r", tables=tables), streams=False)] == [
        "error: cf_prod.product_config: no such table (legacy-stores.md names it)"]
