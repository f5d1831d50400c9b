from django.urls import path

from . import cluster_views, loop_views, queue_views, run_views, views
from .occlusion_views import portal_occlusion, staff_occlusion

app_name = "reviews"

urlpatterns = [
    path("", views.home, name="home"),
    path("staff/", run_views.staff_advertisers, name="staff-advertisers"),
    path("staff/queue/", queue_views.staff_queue, name="staff-queue"),
    path("staff/queue/decide/", queue_views.staff_queue_decide, name="staff-queue-decide"),
    path("staff/sitemaps/<int:sitemap_id>/", views.staff_grid, name="staff-grid"),
    path("staff/sitemaps/<int:sitemap_id>/fixes/", views.staff_fixes, name="staff-fixes"),
    path("staff/images/<int:placement_id>/", views.staff_image, name="staff-image"),
    path("staff/sitemaps/<int:sitemap_id>/clusters/", cluster_views.staff_clusters, name="staff-clusters"),
    path("staff/sitemaps/<int:sitemap_id>/clusters/fix/", cluster_views.staff_cluster_fix, name="staff-cluster-fix"),
    path("staff/fixes/<int:fix_id>/revert/", views.staff_revert, name="staff-revert"),
    path("staff/images/<int:placement_id>/occlusion/", staff_occlusion, name="staff-occlusion"),
    path("staff/exports/", loop_views.staff_exports, name="staff-exports"),
    path("staff/exports/preview/", loop_views.staff_export_preview, name="staff-export-preview"),
    path("staff/exports/<int:export_id>/", loop_views.staff_export, name="staff-export"),
    path("staff/exports/<int:export_id>/status/", loop_views.staff_export_status, name="staff-export-status"),
    path("staff/exports/<int:export_id>/decide/", loop_views.staff_export_decide, name="staff-export-decide"),
    path("staff/exports/<int:export_id>/freeze/", loop_views.staff_export_freeze, name="staff-export-freeze"),
    path("staff/exports/<int:export_id>/train/", loop_views.staff_export_train, name="staff-export-train"),
    path("staff/jobs/<str:kind>/<int:job_id>/", loop_views.staff_job, name="staff-job"),
    path("staff/models/", loop_views.staff_models_root, name="staff-models-root"),
    path("staff/models/retrain/", loop_views.staff_retrain, name="staff-retrain"),
    path(
        "staff/jobs/training/<int:job_id>/models/<int:version_id>/confusion/",
        loop_views.staff_confusion_cell,
        name="staff-confusion-cell",
    ),
    path("staff/models/<str:task>/", loop_views.staff_models, name="staff-models"),
    path("staff/models/<str:task>/accuracy/", loop_views.staff_accuracy, name="staff-accuracy"),
    path("staff/models/<str:task>/rollback/", loop_views.staff_model_rollback, name="staff-model-rollback"),
    path(
        "staff/models/<str:task>/scoped/<int:advertiser_id>/rollback/",
        loop_views.staff_scoped_rollback,
        name="staff-scoped-rollback",
    ),
    path("staff/versions/<int:version_id>/shadow/", loop_views.staff_model_shadow, name="staff-model-shadow"),
    path("staff/versions/<int:version_id>/promote/", loop_views.staff_model_promote, name="staff-model-promote"),
    path("portal/sitemaps/", views.portal_sitemaps, name="portal-sitemaps"),
    path("portal/sitemaps/<int:sitemap_id>/", views.portal_grid, name="portal-grid"),
    path("portal/sitemaps/<int:sitemap_id>/fixes/", views.portal_fixes, name="portal-fixes"),
    path("portal/images/<int:placement_id>/", views.portal_image, name="portal-image"),
    path("portal/sitemaps/<int:sitemap_id>/clusters/", cluster_views.portal_clusters, name="portal-clusters"),
    path("portal/sitemaps/<int:sitemap_id>/clusters/fix/", cluster_views.portal_cluster_fix, name="portal-cluster-fix"),
    path("portal/fixes/<int:fix_id>/revert/", views.portal_revert, name="portal-revert"),
    path("portal/images/<int:placement_id>/occlusion/", portal_occlusion, name="portal-occlusion"),
]

# Recent changes: change sets, each undoable as a whole (reviews.change_set_views).
from . import change_set_views  # noqa: E402

urlpatterns += [
    path("staff/changes/", change_set_views.staff_changes, name="staff-changes"),
    path("staff/changes/<int:change_set_id>/undo/", change_set_views.staff_change_undo, name="staff-change-undo"),
    path("portal/changes/", change_set_views.portal_changes, name="portal-changes"),
    path("portal/changes/<int:change_set_id>/undo/", change_set_views.portal_change_undo, name="portal-change-undo"),
]

# The portal's home, and its pictures by image (reviews.portal_views): portal pages never link a stored name.
from . import portal_views  # noqa: E402

urlpatterns += [
    path("portal/", portal_views.portal_home, name="portal-home"),
    path("portal/images/<int:placement_id>/thumbnail/", portal_views.portal_picture, {"kind": "thumbnail"},
         name="portal-thumbnail"),
    path("portal/images/<int:placement_id>/original/", portal_views.portal_picture, {"kind": "original"},
         name="portal-original"),
    path("portal/images/<int:placement_id>/occlusion/heatmap/", portal_views.portal_heatmap, name="portal-heatmap"),
]  # fmt: skip

# The review queue's undo, and the Runs of a sitemap (reviews.queue_views, reviews.run_views).
urlpatterns += [
    path("staff/queue/undo/", queue_views.staff_queue_undo, name="staff-queue-undo"),
    path("staff/sitemaps/<int:sitemap_id>/runs/", run_views.staff_sitemap_runs, name="staff-sitemap-runs"),
    path("staff/sitemaps/<int:sitemap_id>/runs/start/", run_views.staff_run_start, name="staff-run-start"),
    path("staff/runs/<int:run_id>/", run_views.staff_run, name="staff-run"),
    path("staff/runs/<int:run_id>/cancel/", run_views.staff_run_cancel, name="staff-run-cancel"),
]
