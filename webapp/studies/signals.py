"""What the studies app tells the apps above it, without importing them."""
from django.dispatch import Signal

#: Sent (``study_id=``) once a delivery's new instances of a study are committed; the analysis app listens and
#: decides when to analyse it (``webapp.analysis.tasks.study_received``).
instances_received = Signal()
