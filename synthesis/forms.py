"""The admin pages' forms: they parse the page's fields into service arguments.

They only parse; every rule (counts, budgets, categories, genres, frame bounds, role overrides,
fault rates; export formats, holdouts, shard sizes) is checked by the services, the same ones
the API and the CLI call.
"""

from __future__ import annotations

from typing import Any

from django import forms

from synthesis.export.options import DEFAULT_SHARD_MAX_BYTES, FORMATS
from synthesis.providers.sim import FAULTS, SimConfigError, parse_fault_spec
from synthesis.services.launch_params import LaunchError
from synthesis.states import BatchKind


def _category_choices(which: str) -> list[tuple[str, str]]:
    from synthesis.vocabulary import load_taxonomy

    taxonomy = load_taxonomy()
    categories = (
        taxonomy.subject_categories if which == "subject" else taxonomy.profession_categories
    )
    return [(c.id, c.label) for c in categories]


def parse_role_lines(text: str) -> dict[str, str]:
    """``role=provider:model=weight,…`` one per line → {role: spec}."""
    roles: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        role, sep, spec = line.partition("=")
        if not sep or not role.strip() or not spec.strip():
            raise LaunchError(
                f"role override line {number} {line!r}: write role=provider:model=weight,…"
            )
        roles[role.strip()] = spec.strip()
    return roles


class BatchLaunchForm(forms.Form):
    kind = forms.ChoiceField(choices=BatchKind.choices, initial=BatchKind.CHARACTERS)
    count = forms.CharField(max_length=12, initial="10", help_text="units to make")
    seed = forms.CharField(max_length=20, initial="0", required=False)
    budget_usd = forms.CharField(
        max_length=20, required=False, label="Budget (USD)", help_text="empty: no limit"
    )
    genres = forms.CharField(
        required=False, help_text="stories: comma-separated, e.g. mystery, adventure"
    )
    min_frames = forms.CharField(max_length=4, required=False, label="Frames per story, min")
    max_frames = forms.CharField(max_length=4, required=False, label="max")
    subject_categories = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, help_text="characters: none = all"
    )
    profession_categories = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, help_text="characters: none = all"
    )
    roles = forms.CharField(
        required=False,
        widget=forms.Textarea(
            attrs={"rows": 3, "placeholder": "judge=openai:gpt-4o=1,sim:sim-judge=1"}
        ),
        label="Role → provider overrides",
        help_text="one per line: role=provider:model=weight,…",
    )
    sim_faults = forms.CharField(
        required=False,
        label="Simulator fault rates",
        help_text="e.g. low_viescore=0.3,wrong_pose=0.1 (kinds: " + ", ".join(FAULTS) + ")",
    )
    sim_latency_ms = forms.CharField(max_length=10, required=False, label="Simulator latency (ms)")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        subject = self.fields["subject_categories"]
        profession = self.fields["profession_categories"]
        assert isinstance(subject, forms.MultipleChoiceField)
        assert isinstance(profession, forms.MultipleChoiceField)
        subject.choices = _category_choices("subject")
        profession.choices = _category_choices("profession")

    def launch_arguments(self) -> dict[str, Any]:
        """The ``batch_launch`` keyword arguments (raises LaunchError on unparseable fields)."""
        data = self.cleaned_data
        kind = data["kind"]
        params: dict[str, Any] = {}
        if kind == BatchKind.CHARACTERS:
            if data["subject_categories"]:
                params["subject_categories"] = list(data["subject_categories"])
            if data["profession_categories"]:
                params["profession_categories"] = list(data["profession_categories"])
        if kind == BatchKind.STORIES:  # frame runs take their stories' frame counts
            genres = [g.strip() for g in (data["genres"] or "").split(",") if g.strip()]
            if genres:
                params["genres"] = genres
            for name in ("min_frames", "max_frames"):
                if (data[name] or "").strip():
                    params[name] = data[name].strip()
        roles = parse_role_lines(data["roles"] or "")
        if roles:
            params["roles"] = roles
        sim: dict[str, Any] = {}
        if (data["sim_faults"] or "").strip():
            try:
                sim["faults"] = parse_fault_spec(data["sim_faults"])
            except SimConfigError as exc:
                raise LaunchError(str(exc)) from None
        if (data["sim_latency_ms"] or "").strip():
            sim["latency_ms"] = data["sim_latency_ms"].strip()
        if sim:
            params["sim"] = sim
        return {
            "kind": kind,
            "count": data["count"],
            "seed": (data["seed"] or "0").strip(),
            "budget_usd": data["budget_usd"] or None,
            "params": params,
        }


class ExportStartForm(forms.Form):
    """The export form of the Exports page: parses fields into the parameters that
    ``export_job_start`` checks (the same rules as the API and ``manage.py export_dataset``)."""

    formats = forms.MultipleChoiceField(
        choices=[(f, f) for f in FORMATS],
        initial=list(FORMATS),
        widget=forms.CheckboxSelectMultiple,
        required=False,
    )
    holdout_characters = forms.CharField(max_length=12, initial="0", label="Held-out characters")
    holdout_stories = forms.CharField(max_length=12, initial="0", label="Held-out stories")
    shard_max_bytes = forms.CharField(
        max_length=16, initial=str(DEFAULT_SHARD_MAX_BYTES), label="Shard size limit (bytes)"
    )
    include_partial_stories = forms.BooleanField(
        required=False, label="Include approved stories that are still running"
    )
    seed = forms.CharField(max_length=20, initial="0", label="Split seed")

    def params(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "formats": data["formats"],
            "holdout_characters": data["holdout_characters"].strip(),
            "holdout_stories": data["holdout_stories"].strip(),
            "shard_max_bytes": data["shard_max_bytes"].strip(),
            "include_partial_stories": data["include_partial_stories"],
            "seed": data["seed"].strip(),
        }
