"""Customer data from free text: name, phone, address, neighbourhood, city, department, email.

Customers write their data any way they like, often over several messages:
"Juan Pérez, 300 123 4567" then "Calle 10 # 20-30, Bogotá". Three kinds of evidence are read:

- labelled values ("nombre: …", "mi dirección es …", "city: …"): always taken;
- unmistakable shapes (an email, a 7 to 15 digit phone number, a street address such as
  "Calle 10 # 20-30"): always taken, they are *strong*;
- guesses (a known city alone, two to five words that look like a name): taken only while the
  engine is collecting data or the same message holds strong evidence, because "¿envían a
  Cali?" mentions a city without giving an address.

Values keep the customer's own spelling; spans are reported so intent detection does not read
"dirección de envío: …" as a shipping question.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from jobs.engine import places
from jobs.engine.text_normalise import fold, fold_phrase

Span = tuple[int, int]

_LABELS: dict[str, tuple[str, ...]] = {
    "nombre": (
        "nombre completo",
        "nombre y apellido",
        "nombres",
        "nombre",
        "me llamo",
        "full name",
        "name",
        "soy",
        "i am",
        "i'm",
    ),
    "telefono": (
        "numero de telefono",
        "numero de celular",
        "numero celular",
        "telefono",
        "celular",
        "whatsapp",
        "movil",
        "cel",
        "tel",
        "phone number",
        "phone",
        "mobile",
        "cell",
    ),
    "direccion": (
        "direccion de entrega",
        "direccion de envio",
        "direccion",
        "dir",
        "shipping address",
        "address",
    ),
    "barrio": ("barrio", "neighborhood", "neighbourhood"),
    "ciudad": ("ciudad", "municipio", "city", "town"),
    "departamento": ("departamento", "depto", "dpto", "state", "province", "region"),
    "correo": ("correo electronico", "correo", "e-mail", "email", "mail"),
    "indicaciones": ("indicaciones", "referencias", "referencia", "delivery notes", "notes"),
}
_LABEL_FIELD = {label: name for name, labels in _LABELS.items() for label in labels}
# Labels that are ordinary words too: they only count with an explicit separator.
_NEEDS_SEPARATOR = {"soy", "i am", "i'm", "name", "notes", "state", "region", "mail", "town"}
_NAME_OPENERS = {"soy", "i am", "i'm", "me llamo"}

_LABEL_ALTERNATION = "|".join(
    re.escape(label).replace(r"\ ", r"\s+") for label in sorted(_LABEL_FIELD, key=len, reverse=True)
)
# A label opens a segment: the text's start, or after a line break, ";", ",", ":", ". ", "y "
# or "and ". Labels are tried only there, not at every character of a long message.
_SEGMENT_START = re.compile(r"[\n;,:]|\.\s|\by\s|\band\s")
_LABEL = re.compile(
    r"[ \t]*(?:mi[ \t]+|my[ \t]+)?"
    rf"(?P<label>{_LABEL_ALTERNATION})(?P<sep>[ \t]*(?:[:=]|\bes\b|\bis\b|-(?!\d))[ \t]*|[ \t]+)"
)
# Mid-sentence, a label counts only with a colon ("… Tel: 300 …"), except the neighbourhood,
# which customers append to the address ("Calle 10 # 20-30 barrio Chapinero").
_COLON_LABEL = re.compile(
    rf"(?<!\w)(?:mi[ \t]+|my[ \t]+)?(?P<label>{_LABEL_ALTERNATION})[ \t]*:[ \t]*"
)
_BARRIO_ANYWHERE = re.compile(r"(?<!\w)(?:barrio|neighborhood)[ \t]*:?[ \t]+")
_VALUE_END = re.compile(r"[\n;]")
# Tried only where a run of address characters starts, and never given back: a long run
# without an "@" is rejected once, not once per character.
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]++@[\w-]+(?:\.[\w-]+)+")
# A phone starts with a country code or a group of 3+ digits, so the "20-30" of an address or
# the "109.900" of a price is never read as one. Digit runs are possessive: a run is never split
# between groups, which would make a long run of digits cost exponential time to reject.
_PHONE = re.compile(r"(?<![\w+#/$-])(?:\+\d{1,3}|\(?\d{3,}+\)?)(?:[ \t.-]?\(?\d{2,}+\)?)*(?![\w/])")
_STREET = re.compile(
    r"(?<!\w)(?:calle|cll|cl|carrera|cra|kra|kr|cr|avenida|av|avda|ak|ac|diagonal|dg|diag"
    r"|transversal|tv|transv|circular|circ|manzana|mz|autopista|km|kilometro|vereda)\.?[ \t]*\d+"
    r"[^\n;,]*"
    r"|(?<!\w)\d{1,6}[ \t]+(?:[a-z0-9.]+[ \t]+){0,4}?"
    r"(?:street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|way|court|ct|place|pl)\b"
    r"[^\n;,]*"
)
_SEGMENT_SEPARATOR = re.compile(r"[\n;,]")
_NAME_WORD = re.compile(
    r"^[^\W\d_]+(?:['\u2019.-][^\W\d_]+)*\.?$"
)  # O'Neil, also with a typographic apostrophe
_PLACE_PREFIXES = (
    "y vivo en ",
    "and i live in ",
    "vivo en ",
    "ciudad de ",
    "soy de ",
    "desde ",
    "en ",
    "de ",
    "i live in ",
    "i'm in ",
    "from ",
    "in ",
)
_PUNCTUATION = re.compile(r"[\s.,;:!?¡¿\"'()*_~]+")
_TRIM = " \t\r\n.,;:!?¡¿\"'-"
_NAME_PARTICLES = {"de", "del", "la", "las", "los", "y", "san", "da", "di", "van", "von"}
# Words that do not occur in names: a segment holding one is a sentence, not a name.
_NOT_NAME_WORDS = frozenset(
    """
    hola buenas buenos dias tardes noches gracias quiero quisiera comprar compra pedido precio
    cuanto cuesta vale envio envios pago como que donde cuando porque para por con sin pero
    tengo tiene tienen es esta estoy son mi me te se le lo su sus un una unos uno dos tres el
    en a o al no si ok listo bien mal muy mas menos frasco frascos capsulas pack combo producto
    asesor humano persona calle carrera avenida barrio ciudad direccion telefono celular correo
    favor jaja jajaja info informacion ya hay the and i you is are am want buy how what where
    when yes hello hi hey thanks thank my your it to of in for with please order price bottle
    street city address phone name
    """.split()
)


@dataclass(frozen=True)
class Captured:
    values: dict[str, str] = field(default_factory=dict)
    spans: tuple[Span, ...] = ()  # labels and values read as data
    strong: bool = False


@dataclass
class _Reading:
    """What one message yields, before the weak guesses are kept or dropped."""

    folded: str
    text: str
    strong: dict[str, str] = field(default_factory=dict)
    weak: dict[str, str] = field(default_factory=dict)
    spans: list[Span] = field(default_factory=list)
    weak_spans: list[Span] = field(default_factory=list)

    def claimed(self, span: Span) -> bool:
        return any(s < span[1] and span[0] < e for s, e in self.spans)

    def first_claim_after(self, start: int, end: int) -> int:
        inside = [s for s, _ in self.spans if start < s < end]
        return min(inside, default=end)

    def value(self, start: int, end: int) -> str:
        return self.text[start:end].strip(_TRIM)

    def take(self, name: str, value: str, span: Span) -> None:
        self.strong[name] = value
        self.spans.append(span)

    def guess(self, name: str, value: str, span: Span) -> None:
        if name not in self.strong and name not in self.weak:
            self.weak[name] = value
            self.weak_spans.append(span)


def capture_data(
    text: str,
    *,
    expecting: bool,
    known: Mapping[str, str],
    folded: str | None = None,
    reserved: Sequence[Span] = (),
) -> Captured:
    """The customer data in `text`. `expecting`: the engine asked for data (collecting_data);
    `known`: data captured earlier, so a guessed name never overwrites a real one;
    `reserved`: spans where intents matched, never guessed to be a name ("buen día")."""
    reading = _Reading(folded=fold(text) if folded is None else folded, text=text)
    _read_labels(reading)
    _read_emails(reading)
    _read_phones(reading)
    _read_streets(reading)
    _read_places(reading)
    if expecting and "nombre" not in known:
        _read_name(reading, reserved)
    strong = bool(reading.strong)
    values = dict(reading.strong)
    spans = list(reading.spans)
    if strong or expecting:
        for name, value in reading.weak.items():
            values.setdefault(name, value)
        spans.extend(reading.weak_spans)
    city = values.get("ciudad") or known.get("ciudad")
    if city and "departamento" not in values and not known.get("departamento"):
        department = places.department_of(city)
        if department:
            values["departamento"] = department
    return Captured(values=values, spans=tuple(spans), strong=strong)


def _read_labels(reading: _Reading) -> None:
    folded = reading.folded
    hits: list[tuple[int, int, str, str]] = []  # label start, value start, field, label
    starts = [0, *(m.end() for m in _SEGMENT_START.finditer(folded))]
    for m in filter(None, (_LABEL.match(folded, start) for start in starts)):
        label = re.sub(r"\s+", " ", m["label"])
        separator = m["sep"].strip()
        if label in _NEEDS_SEPARATOR and not separator and label not in _NAME_OPENERS:
            continue
        hits.append((m.start("label"), m.end(), _LABEL_FIELD[label], label))
    for m in _COLON_LABEL.finditer(folded) if ":" in folded else ():
        label = re.sub(r"\s+", " ", m["label"])
        hits.append((m.start("label"), m.end(), _LABEL_FIELD[label], label))
    hits.extend((m.start(), m.end(), "barrio", "barrio") for m in _BARRIO_ANYWHERE.finditer(folded))
    longest: dict[int, tuple[int, int, str, str]] = {}  # two regexes may find one label
    for hit in hits:
        if hit[0] not in longest or hit[1] > longest[hit[0]][1]:
            longest[hit[0]] = hit
    hits = sorted(longest.values())
    for i, (start, value_start, name, label) in enumerate(hits):
        if any(s <= start < e for s, e in reading.spans):
            continue
        end = hits[i + 1][0] if i + 1 < len(hits) else len(folded)
        line_end = _VALUE_END.search(folded, value_start, end)
        end = line_end.start() if line_end else end
        if name != "direccion":
            comma = folded.find(",", value_start, end)
            end = comma if comma >= 0 else end
        _take_labelled(reading, name, label, value_start, end, start)


def _take_labelled(
    reading: _Reading, name: str, label: str, start: int, end: int, label_start: int
) -> None:
    value = reading.value(start, end)
    if not value or reading.text[start:end].rstrip().endswith("?"):
        return  # "dirección de la tienda?" asks a question, it gives no data
    if name == "nombre":
        if not _looks_like_name(value, minimum=1) or (label in _NAME_OPENERS and _is_place(value)):
            return
    elif name == "telefono":
        # The value ends with the number: "… 315 555 1234 y vivo en Cali" goes on to a city.
        found = _PHONE.search(reading.folded, start, end)
        phone = _phone_digits(found.group()) if found else None
        if found is None or phone is None:
            return
        value, end = phone, found.end()
    elif name == "correo":
        email = _EMAIL.search(reading.text, start, end)
        if email is None:
            return
        value, end = email.group(), email.end()
    elif name == "ciudad":
        # "medellin" or "Medellin" becomes "Medellín"; a city we do not know stays as written.
        value = places.city_named(_core(fold(value))) or value
    elif name == "departamento":
        value = places.department_named(_core(fold(value))) or value
    elif name in ("direccion", "barrio"):
        value, end = _split_trailing_places(reading, start, end)
        # Addresses carry a number ("Calle 10 # 20-30", "Mz 4 casa 2"); "dirección de la
        # tienda" is a question about the shop.
        if not value or (name == "direccion" and not any(c.isdigit() for c in value)):
            return
    reading.take(name, value[:200], (label_start, end))


def _split_trailing_places(reading: _Reading, start: int, end: int) -> tuple[str, int]:
    """ "Calle 10 # 20-30, Bogotá" is an address and a city: give the trailing parts that are
    known places to the city and department, and end the address before them."""
    parts = [(m.start(), m.end()) for m in re.finditer(r"[^,]+", reading.folded[start:end])]
    while len(parts) > 1:
        part_start, part_end = parts[-1]
        core = _core(reading.folded[start + part_start : start + part_end])
        if city := places.city_named(core):
            reading.guess("ciudad", city, (start + part_start, end))
        elif department := places.department_named(core):
            reading.guess("departamento", department, (start + part_start, end))
        else:
            break
        parts.pop()
        end = start + part_start - 1
    words = reading.folded[start:end].split()
    trailing = places.trailing_city(words)
    if trailing and len(words) > trailing[1] + 1:
        city, size = trailing
        reading.guess("ciudad", city, (start, end))
        cut = reading.folded.rfind(words[-size], start, end)
        end = cut
    return reading.value(start, end), end


def _read_emails(reading: _Reading) -> None:
    for m in _EMAIL.finditer(reading.text):
        if not reading.claimed(m.span()) and "correo" not in reading.strong:
            reading.take("correo", m.group(), m.span())


def _read_phones(reading: _Reading) -> None:
    for m in _PHONE.finditer(reading.folded):
        phone = _phone_digits(m.group())
        if phone and not reading.claimed(m.span()) and "telefono" not in reading.strong:
            reading.take("telefono", phone, m.span())


def _read_streets(reading: _Reading) -> None:
    if "direccion" in reading.strong:
        return
    for m in _STREET.finditer(reading.folded):
        if reading.claimed((m.start(), m.start() + 1)):
            continue
        end = reading.first_claim_after(m.start(), m.end())
        value, end = _split_trailing_places(reading, m.start(), end)
        if len(value) >= 4:
            reading.take("direccion", value[:200], (m.start(), end))
            return


def _read_places(reading: _Reading) -> None:
    for start, end in _free_pieces(reading):
        core = _strip_place_prefix(_core(reading.folded[start:end]))
        city = places.city_named(core)
        department = places.department_named(core)
        if city:
            reading.guess("ciudad", city, (start, end))
        elif department:
            reading.guess("departamento", department, (start, end))
        else:
            _read_city_and_department(reading, core, (start, end))


def _read_city_and_department(reading: _Reading, core: str, span: Span) -> None:
    words = core.split()
    if len(words) > 6:  # "San José del Guaviare Guaviare" is as long as it gets
        return
    for cut in range(1, len(words)):
        city = places.city_named(" ".join(words[:cut]))
        department = places.department_named(" ".join(words[cut:]))
        if city and department:
            reading.guess("ciudad", city, span)
            reading.guess("departamento", department, span)
            return


def _read_name(reading: _Reading, reserved: Sequence[Span]) -> None:
    if "nombre" in reading.strong:
        return
    for start, end in _segments(reading.folded):
        taken = [*reading.weak_spans, *reserved]
        if reading.claimed((start, end)) or any(s < end and start < e for s, e in taken):
            continue
        value = reading.value(start, end)
        if _looks_like_name(value, minimum=2):
            reading.guess("nombre", value, (start, end))
            return


def _free_pieces(reading: _Reading) -> list[Span]:
    """The segments with what is already read as data cut out of them."""
    pieces: list[Span] = []
    for start, end in _segments(reading.folded):
        cursor = start
        for s, e in sorted(reading.spans):
            if s < end and cursor < e:
                if s > cursor:
                    pieces.append((cursor, s))
                cursor = max(cursor, e)
        if cursor < end:
            pieces.append((cursor, end))
    return [p for p in pieces if reading.folded[p[0] : p[1]].strip()]


def _segments(folded: str) -> list[Span]:
    spans: list[Span] = []
    start = 0
    for m in _SEGMENT_SEPARATOR.finditer(folded):
        spans.append((start, m.start()))
        start = m.end()
    spans.append((start, len(folded)))
    return [s for s in spans if folded[s[0] : s[1]].strip()]


def _core(folded: str) -> str:
    return _PUNCTUATION.sub(" ", folded).strip()


def _strip_place_prefix(core: str) -> str:
    for prefix in _PLACE_PREFIXES:
        if core.startswith(prefix):
            return core[len(prefix) :]
    return core


def _is_place(value: str) -> bool:
    core = _strip_place_prefix(_core(fold(value)))
    return bool(places.city_named(core) or places.department_named(core))


def _looks_like_name(value: str, *, minimum: int) -> bool:
    words = value.split()
    if not minimum <= len(words) <= 5 or _is_place(value):
        return False
    folded = [fold_phrase(w).strip(".") for w in words]
    if folded[0] in _NAME_PARTICLES or folded[-1] in _NAME_PARTICLES:
        return False
    return all(
        _NAME_WORD.match(word) and (f in _NAME_PARTICLES or f not in _NOT_NAME_WORDS)
        for word, f in zip(words, folded, strict=True)
    )


def _phone_digits(value: str) -> str | None:
    digits = "".join(c for c in value if c.isdigit())
    if not 7 <= len(digits) <= 15 or not digits.isascii():
        return None
    return ("+" if value.lstrip().startswith("+") else "") + digits
