"""factory_boy factories for the pipeline's data, built directly in the states a test needs.

Images are real small PNGs (``hilapp.imaging.to_png``) stored through ``synthesis.artifacts``.
"""

from __future__ import annotations

import hashlib
from typing import Any

import factory
from PIL import Image

from hilapp.imaging import to_png
from synthesis.artifacts import save_png
from synthesis.models import Batch, Character, Frame, FrameCharacter, Story, StoryCast
from synthesis.states import (
    ApprovalPath,
    BatchKind,
    CharacterStatus,
    FrameStatus,
    ReferenceStatus,
    StoryStatus,
)

SUBJECTS = [("mammal", "red fox"), ("bird", "barn owl"), ("reptile", "green turtle")]
PROFESSIONS = [("crafts", "baker"), ("science", "astronomer"), ("service", "postman")]
POSES = ["pose.standing_neutral", "pose.arms_crossed", "pose.hands_on_hips"]
EXPRESSIONS = ["expr.happy", "expr.sad", "expr.surprised"]
COMPOSITIONS = ["comp.close_up", "comp.medium_shot", "comp.wide_shot"]


def png_bytes(label: str, size: int = 24) -> bytes:
    """A small PNG whose pixels depend on ``label`` (distinct labels, distinct bytes)."""
    digest = hashlib.sha256(label.encode()).digest()
    image = Image.new("RGB", (size, size), tuple(digest[:3]))
    for i in range(0, 24, 3):
        image.putpixel((digest[i] % size, digest[i + 1] % size), tuple(digest[i : i + 3]))
    return to_png(image)


def stored_png(label: str, folder: str) -> tuple[str, str]:
    return save_png(png_bytes(label), folder=folder)


class BatchFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Batch

    kind = BatchKind.FRAMES
    requested = 1


class CharacterFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Character

    batch = factory.SubFactory(BatchFactory, kind=BatchKind.CHARACTERS)
    index = factory.Sequence(lambda n: n)
    cid = factory.Sequence(lambda n: f"C1-{n:05d}")
    status = CharacterStatus.LOCKED
    subject_category = factory.Sequence(lambda n: SUBJECTS[n % len(SUBJECTS)][0])
    subject_type = factory.Sequence(lambda n: SUBJECTS[n % len(SUBJECTS)][1])
    profession_category = factory.Sequence(lambda n: PROFESSIONS[(n // 3) % 3][0])
    profession = factory.Sequence(lambda n: PROFESSIONS[(n // 3) % 3][1])
    name = factory.Sequence(lambda n: f"Character {n}")
    visual_description = "a small test character"
    template = factory.LazyAttribute(lambda o: stored_png(f"template:{o.cid}", "templates")[0])
    viescore_overall = 8.5


class StoryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Story
        skip_postgeneration_save = True

    batch = factory.SubFactory(BatchFactory, kind=BatchKind.STORIES)
    index = factory.Sequence(lambda n: n)
    status = StoryStatus.COMPLETE
    genre = factory.Iterator(["adventure", "comedy", "mystery"])
    title = factory.Sequence(lambda n: f"Story {n}")
    script = factory.LazyFunction(lambda: {"frames": []})

    @factory.post_generation
    def cast_of(self, create: bool, extracted: list[Character] | None, **kw: Any) -> None:
        for order, character in enumerate(extracted or []):
            StoryCast.objects.create(story=self, character=character, order=order)


class FrameFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Frame

    story = factory.SubFactory(StoryFactory)
    index = factory.Sequence(lambda n: n)
    frame_text = factory.LazyAttribute(lambda o: f"Frame {o.index} of {o.story.title}: they meet.")
    status = FrameStatus.APPROVED
    approval_path = ApprovalPath.GATE
    synthesizer_model = "sim:frame-v1"
    arbitrator_model = "sim:iqcc-v1"

    @factory.lazy_attribute
    def image(self) -> str:
        name, _ = stored_png(f"frame:{self.story.pk}:{self.index}", "frames")
        return name

    @factory.lazy_attribute
    def image_sha256(self) -> str:
        return self.image.rsplit("/", 1)[-1].removesuffix(".png")


class FrameCharacterFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = FrameCharacter

    frame = factory.SubFactory(FrameFactory)
    character = factory.SubFactory(CharacterFactory)
    slot = factory.Sequence(lambda n: n % 1000)
    pid = factory.Sequence(lambda n: POSES[n % len(POSES)])
    eid = factory.Sequence(lambda n: EXPRESSIONS[n % len(EXPRESSIONS)])
    ctag = factory.Sequence(lambda n: COMPOSITIONS[n % len(COMPOSITIONS)])
    reference_status = ReferenceStatus.APPROVED


def make_frame(story: Story, index: int, characters: list[Character], **kwargs: Any) -> Frame:
    """A frame of ``story`` showing ``characters`` (slots in order)."""
    frame = FrameFactory(story=story, index=index, **kwargs)
    for slot, character in enumerate(characters):
        FrameCharacterFactory(frame=frame, character=character, slot=slot)
    return frame
