from django.urls import path

from . import cluster_views, views
from .occlusion_views import portal_occlusion, staff_occlusion

app_name = "reviews"

urlpatterns = [
    path("", views.home, name="home"),
    path("staff/", views.staff_advertisers, name="staff-advertisers"),
    path("staff/queue/", views.staff_queue, name="staff-queue"),
    path("staff/queue/decide/", views.staff_queue_decide, name="staff-queue-decide"),
    path("staff/sitemaps/<int:sitemap_id>/", views.staff_grid, name="staff-grid"),
    path("staff/sitemaps/<int:sitemap_id>/fixes/", views.staff_fixes, name="staff-fixes"),
    path("staff/images/<int:placement_id>/", views.staff_image, name="staff-image"),
    path("staff/sitemaps/<int:sitemap_id>/clusters/", cluster_views.staff_clusters, name="staff-clusters"),
    path("staff/sitemaps/<int:sitemap_id>/clusters/fix/", cluster_views.staff_cluster_fix, name="staff-cluster-fix"),
    path("staff/fixes/<int:fix_id>/revert/", views.staff_revert, name="staff-revert"),
    path("staff/images/<int:placement_id>/occlusion/", staff_occlusion, name="staff-occlusion"),
    path("portal/", views.portal_sitemaps, name="portal-sitemaps"),
    path("portal/sitemaps/<int:sitemap_id>/", views.portal_grid, name="portal-grid"),
    path("portal/sitemaps/<int:sitemap_id>/fixes/", views.portal_fixes, name="portal-fixes"),
    path("portal/images/<int:placement_id>/", views.portal_image, name="portal-image"),
    path("portal/sitemaps/<int:sitemap_id>/clusters/", cluster_views.portal_clusters, name="portal-clusters"),
    path("portal/sitemaps/<int:sitemap_id>/clusters/fix/", cluster_views.portal_cluster_fix, name="portal-cluster-fix"),
    path("portal/fixes/<int:fix_id>/revert/", views.portal_revert, name="portal-revert"),
    path("portal/images/<int:placement_id>/occlusion/", portal_occlusion, name="portal-occlusion"),
]
