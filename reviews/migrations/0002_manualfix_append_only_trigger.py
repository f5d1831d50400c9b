"""PostgreSQL refuses UPDATE and DELETE on manual fixes, whatever code path tries (the model refuses too)."""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION reviews_manualfix_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'manual fixes are append-only (% refused)', TG_OP USING ERRCODE = 'check_violation';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER reviews_manualfix_append_only BEFORE UPDATE OR DELETE ON reviews_manualfix
    FOR EACH ROW EXECUTE FUNCTION reviews_manualfix_append_only();
"""
DROP = """
DROP TRIGGER IF EXISTS reviews_manualfix_append_only ON reviews_manualfix;
DROP FUNCTION IF EXISTS reviews_manualfix_append_only();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)  # the body has "%": no placeholders here


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("reviews", "0001_initial")]

    operations = [migrations.RunPython(forwards, backwards)]
