from django.urls import path

from review import api

app_name = "review-api"
urlpatterns = [
    path("next/", api.NextItemView.as_view(), name="next"),
    path("items/<int:item_id>/", api.ItemDetailView.as_view(), name="item"),
    path("items/<int:item_id>/votes/", api.VoteView.as_view(), name="votes"),
    path("items/<int:item_id>/my-vote/", api.MyVoteView.as_view(), name="my-vote"),
    path("items/<int:item_id>/release/", api.ReleaseView.as_view(), name="release"),
    path("guidelines/", api.GuidelinesView.as_view(), name="guidelines"),
    path("agreement/", api.AgreementView.as_view(), name="agreement"),
]
