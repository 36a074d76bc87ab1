from django.apps import AppConfig


class SynthesisConfig(AppConfig):
    name = "synthesis"
    verbose_name = "Synthesis"

    def ready(self) -> None:
        # Review decisions (HV1/HV2/HV3) are applied by synthesis services; the review app
        # knows nothing of synthesis, so synthesis registers its handlers here.
        from synthesis import review_hooks, tasks  # noqa: F401
        from synthesis.services import gate_audit  # noqa: F401  (the gate-audit stage's hooks)
