from django.contrib.auth import views as auth_views
from django.urls import path

from analytics.web import views

app_name = "web"
urlpatterns = [
    path("", views.overview, name="overview"),
    path("layers/", views.layers, name="layers"),
    path("images/<int:pk>/", views.image, name="image"),
    path("lineage/", views.lineage, name="lineage"),
    path("whatif/", views.whatif, name="whatif"),
    # Django's own login (the admin's users and passwords), open to non-staff readers too
    path(
        "login/",
        auth_views.LoginView.as_view(template_name="web/login.html", next_page="web:overview"),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(next_page="web:login"), name="logout"),
]
