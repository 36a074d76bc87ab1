"""The story gallery's filter form (GET parameters); a bad value is a 400 naming the field."""

from __future__ import annotations

from django import forms

from synthesis.services.storybook import GalleryFilter
from synthesis.states import ApprovalPath


class GalleryFilterForm(forms.Form):
    genre = forms.CharField(required=False, max_length=64)
    cast_size = forms.TypedChoiceField(
        required=False,
        label="Cast size",
        choices=[("", "any")] + [(str(n), str(n)) for n in range(1, 6)],
        coerce=int,
        empty_value=None,
    )
    character = forms.CharField(
        required=False, max_length=200, help_text="a CID or part of a character's name"
    )
    approval_path = forms.ChoiceField(
        required=False,
        label="Approval path",
        choices=[("", "any"), *ApprovalPath.choices],
    )

    def __init__(self, *args: object, genres: list[str] | None = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        if genres is not None:
            self.fields["genre"] = forms.ChoiceField(
                required=False, choices=[("", "any")] + [(g, g) for g in genres]
            )

    def filters(self) -> GalleryFilter:
        data = self.cleaned_data
        return GalleryFilter(
            genre=data.get("genre") or "",
            cast_size=data.get("cast_size"),
            character=(data.get("character") or "").strip(),
            approval_path=data.get("approval_path") or "",
        )
