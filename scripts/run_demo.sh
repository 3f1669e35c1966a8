#!/usr/bin/env bash
# Starts the demo: a Celery worker (both queues), the DICOM listener and the web server, prints the URL and the
# logins, and stops them on Ctrl-C. Without CELERY_BROKER_URL the worker uses the filesystem broker in var/celery (no server needed).
set -euo pipefail
HOST=${1:-127.0.0.1}; PORT=${2:-8000}; DICOM_PORT=${3:-11112}
PY=.venv/bin/python
# The demo serves plain HTTP on this machine: session cookies without Secure, no HTTPS redirect. DEBUG stays off.
export LUNGSCOPE_PLAIN_HTTP=1
mkdir -p var/log
$PY -m celery -A webapp worker -Q default,gpu --pool solo -l INFO >var/log/worker.log 2>&1 &
WORKER=$!
$PY manage.py dicom_listener --host "$HOST" --port "$DICOM_PORT" >var/log/dicom.log 2>&1 &
LISTENER=$!
trap 'kill $WORKER $LISTENER 2>/dev/null || true' EXIT INT TERM
cat <<TXT

  lungscope demo: http://$HOST:$PORT/
  logins: admin / admin-demo-pass   clinician / clinician-demo-pass   annotator / annotator-demo-pass
  worker log: var/log/worker.log     API docs: http://$HOST:$PORT/api/docs/
  DICOM listener: AE LUNGSCOPE at $HOST:$DICOM_PORT (log var/log/dicom.log); allow a sender with
    .venv/bin/python manage.py dicom_peer add --ae-title YOUR_AE

TXT
$PY -m gunicorn webapp.wsgi -b "$HOST:$PORT" --workers 2 --threads 4 --timeout 300 --access-logfile - 
