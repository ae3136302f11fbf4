"""The generation prompt and the ad headline, built from segment, subject and brand."""

from __future__ import annotations

from assets_pkg.campaigns.segments import Brand, Segment


def build_prompt(segment: Segment, subject: str, brand: Brand) -> str:
    brand_line = f"{brand.name} ({brand.tagline})" if brand.tagline else brand.name
    return (
        f"Create a polished advertising photo for {brand_line}. "
        f"Use the {subject} from the first image as the hero, keeping its look faithful to the photo. "
        f"Set the scene for this audience: {segment.name}, {segment.description}. "
        f"Place the brand logo from the second image small and clean in a corner. "
        "Photorealistic, natural light, uncluttered composition, no other text."
    )


def build_headline(segment: Segment, brand: Brand) -> str:
    return f"{brand.name} · made for {segment.name.lower()}"
