"""Top-level URLs. Each app contributes its pages (``urls``) and API routes (``api_urls``)."""

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from hilapp import media, views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("synthesis/", include("synthesis.urls")),
    path("review/", include("review.urls")),
    path("api/v1/", include("synthesis.api_urls")),
    path("api/v1/review/", include("review.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    # Stored media only through signed, expiring URLs (hilapp.media); never a public folder,
    # in embedded mode and DEBUG included.
    path(f"{settings.MEDIA_URL.lstrip('/')}<path:name>", media.media_serve, name="media"),
]

handler403 = views.error_403
handler404 = views.error_404
handler500 = views.error_500
