"""Top-level URLs. Each app contributes its pages (``urls``) and API routes (``api_urls``)."""

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path
from django.views.decorators.cache import cache_control
from django.views.static import serve
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from hilapp import views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("synthesis/", include("synthesis.urls")),
    path("review/", include("review.urls")),
    path("api/v1/", include("synthesis.api_urls")),
    path("api/v1/review/", include("review.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
]
if settings.MEDIA_STORAGE_BACKEND.endswith("FileSystemStorage"):
    # Local media is served by Django itself (``static()`` would only do so with DEBUG on);
    # names are content hashes, so a long cache lifetime is safe. Put a web server in front
    # for heavy traffic, or use S3-compatible storage, whose URLs point elsewhere.
    urlpatterns += [
        re_path(
            rf"^{settings.MEDIA_URL.lstrip('/')}(?P<path>.*)$",
            cache_control(max_age=31536000, immutable=True)(serve),
            {"document_root": settings.MEDIA_ROOT},
        )
    ]
