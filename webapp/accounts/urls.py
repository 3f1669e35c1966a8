"""Account API routes; mounted under ``/api/`` by ``webapp/urls.py``. (The login page is mounted there too.)"""
from django.urls import path

from . import views

urlpatterns = [
    path("me/", views.MeView.as_view(), name="me"),
    path("users/", views.UserListView.as_view(), name="user-list"),
    path("users/<int:pk>/", views.UserDetailView.as_view(), name="user-detail"),
]
