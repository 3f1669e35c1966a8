"""Box corners must be ordered; the audit log becomes append-only in the database too (PostgreSQL only).

The trigger refuses DELETE and any UPDATE except the ON DELETE SET NULL of ``study``/``actor`` (so studies and
users can still be removed, leaving their events behind). TRUNCATE is left alone for test-database flushes.
"""
from django.db import migrations, models

TRIGGER_SQL = """
CREATE OR REPLACE FUNCTION review_auditevent_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND (NEW.id, NEW.action, NEW.object_type, NEW.object_id, NEW.created_at)
           IS NOT DISTINCT FROM (OLD.id, OLD.action, OLD.object_type, OLD.object_id, OLD.created_at)
       AND NEW.before IS NOT DISTINCT FROM OLD.before AND NEW.after IS NOT DISTINCT FROM OLD.after
       AND (NEW.study_id IS NULL OR NEW.study_id = OLD.study_id)
       AND (NEW.actor_id IS NULL OR NEW.actor_id = OLD.actor_id) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION USING MESSAGE = 'review_auditevent is append-only: ' || TG_OP || ' refused';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER review_auditevent_append_only BEFORE UPDATE OR DELETE ON review_auditevent
    FOR EACH ROW EXECUTE FUNCTION review_auditevent_append_only();
"""
DROP_SQL = """
DROP TRIGGER IF EXISTS review_auditevent_append_only ON review_auditevent;
DROP FUNCTION IF EXISTS review_auditevent_append_only();
"""


def _on_postgresql(sql: str):
    def run(apps, schema_editor) -> None:
        if schema_editor.connection.vendor == "postgresql":
            with schema_editor.connection.cursor() as cursor:
                cursor.execute(sql)  # no params: the body is passed through verbatim
    return run


class Migration(migrations.Migration):

    dependencies = [
        ("review", "0001_initial"),
    ]

    operations = [
        migrations.AddConstraint(
            model_name="box",
            constraint=models.CheckConstraint(
                condition=models.Q(("x0__gte", 0), ("x0__lte", models.F("x1")), ("y0__gte", 0),
                                   ("y0__lte", models.F("y1"))),
                name="box_corners_ordered"),
        ),
        migrations.RunPython(_on_postgresql(TRIGGER_SQL), _on_postgresql(DROP_SQL)),
    ]
