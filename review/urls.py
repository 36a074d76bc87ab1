from django.urls import path

from review import views

app_name = "review"
urlpatterns = [
    path("", views.home, name="home"),
    path("agreement/", views.agreement_page, name="agreement"),
    path("items/<int:item_id>/", views.item_page, name="item"),
    path("items/<int:item_id>/revise/", views.revise_vote, name="revise"),
    path("<str:stage>/", views.stage_page, name="stage"),
    path("<str:stage>/next-card/", views.next_card, name="next_card"),
]
