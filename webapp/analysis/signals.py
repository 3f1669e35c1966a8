"""What the analysis app tells the apps above it (review), without importing them."""
from django.dispatch import Signal

#: Sent (``run=``, ``findings=``, ``labels=``: the box label of each finding) inside the transaction that stores a
#: run's results, replacing whatever an earlier attempt of the run wrote; the review app turns the findings into
#: proposed AI boxes (``webapp.review.services.propose_ai_boxes``).
results_stored = Signal()
