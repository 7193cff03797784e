"""Message content parts: Responses wire <-> canonical Text, Image and Document.

Client side: `input_text`, `output_text`, `refusal`, `input_image` (`image_url` as an http
URL or a data URL) and `input_file` (`file_data` as a data URL, or `file_url`). Uploaded
`file_id`s are refused: the gateway has no Files API to resolve them against.
"""

from __future__ import annotations

from typing import Any

from babelgate.canonical import JSON, Document, Image, Text, invalid

from ..fields import typed_object

Content = Text | Image | Document
_TEXT_TYPES = frozenset({"input_text", "output_text", "text"})


def parse_content(raw: Any, where: str) -> list[Content]:
    """A message's `content` (string or parts) -> canonical parts."""
    if isinstance(raw, str):
        return [Text(raw)] if raw else []
    if not isinstance(raw, list):
        raise invalid(f"{where} must be a string or an array", where)
    return [parse_part(part, f"{where}[{j}]") for j, part in enumerate(raw)]


def parse_part(part: Any, where: str) -> Content:
    part, kind = typed_object(part, where)
    if kind in _TEXT_TYPES:
        return Text(_string(part, "text", where))
    if kind == "refusal":
        return Text(_string(part, "refusal", where))
    if kind == "input_image":
        return _parse_image(part, where)
    if kind == "input_file":
        return _parse_file(part, where)
    raise invalid(f"{where}.type {kind!r} is not supported", f"{where}.type")


def _string(part: JSON, key: str, where: str) -> str:
    value = part.get(key)
    if not isinstance(value, str):
        raise invalid(f"{where}.{key} must be a string", f"{where}.{key}")
    return value


def _parse_image(part: JSON, where: str) -> Image:
    if part.get("file_id") and not part.get("image_url"):
        raise invalid(
            f"{where}.file_id: uploaded files are not supported by this gateway; "
            "send the image as image_url (an http(s) URL or a data URL)",
            f"{where}.file_id",
        )
    url = _string(part, "image_url", where)
    detail = part.get("detail") if isinstance(part.get("detail"), str) else None
    media_type, data = split_data_url(url)
    if data is not None:
        return Image(media_type=media_type, data=data, detail=detail)
    return Image(url=url, detail=detail)


def _parse_file(part: JSON, where: str) -> Document:
    filename = part.get("filename") if isinstance(part.get("filename"), str) else None
    file_data = part.get("file_data")
    if isinstance(file_data, str) and file_data:
        media_type, data = split_data_url(file_data)
        if data is None:  # bare base64
            media_type, data = _guess_media_type(filename), file_data
        return Document(media_type=media_type, data=data, filename=filename)
    file_url = part.get("file_url")
    if isinstance(file_url, str) and file_url:
        return Document(url=file_url, filename=filename, media_type=_guess_media_type(filename))
    if part.get("file_id"):
        raise invalid(
            f"{where}.file_id: uploaded files are not supported by this gateway; "
            "send file_data (a data URL) or file_url",
            f"{where}.file_id",
        )
    raise invalid(f"{where} needs file_data or file_url", where)


def split_data_url(url: str) -> tuple[str | None, str | None]:
    """`data:<type>;base64,<data>` -> (type, data); (None, None) for anything else."""
    if not url.startswith("data:"):
        return None, None
    header, comma, data = url[5:].partition(",")
    if not comma or not header.endswith(";base64"):
        return None, None
    return header[: -len(";base64")] or None, data


def _guess_media_type(filename: str | None) -> str | None:
    if filename and filename.lower().endswith(".pdf"):
        return "application/pdf"
    return None


# ---------------------------------------------------------------- canonical -> wire


def render_input_part(part: Content) -> JSON:
    """A user-side part as a Responses input content part."""
    if isinstance(part, Text):
        return {"type": "input_text", "text": part.text}
    if isinstance(part, Image):
        item: JSON = {"type": "input_image", "image_url": image_url(part)}
        item["detail"] = part.detail or "auto"
        return item
    return _render_document(part)


def image_url(image: Image) -> str:
    if image.data is not None:
        return f"data:{image.media_type or 'image/png'};base64,{image.data}"
    return image.url or ""


def _render_document(doc: Document) -> JSON:
    if doc.text is not None:
        title = f"{doc.title}\n\n" if doc.title else ""
        return {"type": "input_text", "text": title + doc.text}
    item: JSON = {"type": "input_file"}
    if doc.data is not None:
        item["file_data"] = f"data:{doc.media_type or 'application/pdf'};base64,{doc.data}"
        item["filename"] = doc.filename or doc.title or "document.pdf"
    else:
        item["file_url"] = doc.url or ""
        if doc.filename:
            item["filename"] = doc.filename
    return item
