"""Colombian cities and departments, for recognising an unlabelled city and inferring its
department ("Medellín" -> Antioquia) so the customer is not asked for what the city says.

Keys are folded (no accents, lowercase); values are the names as written on an address.
"""

from __future__ import annotations

from jobs.engine.text_normalise import fold_phrase

DEPARTMENTS: tuple[str, ...] = (
    "Amazonas",
    "Antioquia",
    "Arauca",
    "Atlántico",
    "Bogotá D.C.",
    "Bolívar",
    "Boyacá",
    "Caldas",
    "Caquetá",
    "Casanare",
    "Cauca",
    "Cesar",
    "Chocó",
    "Córdoba",
    "Cundinamarca",
    "Guainía",
    "Guaviare",
    "Huila",
    "La Guajira",
    "Magdalena",
    "Meta",
    "Nariño",
    "Norte de Santander",
    "Putumayo",
    "Quindío",
    "Risaralda",
    "San Andrés y Providencia",
    "Santander",
    "Sucre",
    "Tolima",
    "Valle del Cauca",
    "Vaupés",
    "Vichada",
)

# City -> department. Department capitals and the larger municipalities.
CITIES: dict[str, str] = {
    "Bogotá": "Bogotá D.C.",
    "Medellín": "Antioquia",
    "Bello": "Antioquia",
    "Itagüí": "Antioquia",
    "Envigado": "Antioquia",
    "Rionegro": "Antioquia",
    "Sabaneta": "Antioquia",
    "Apartadó": "Antioquia",
    "Cali": "Valle del Cauca",
    "Palmira": "Valle del Cauca",
    "Buenaventura": "Valle del Cauca",
    "Tuluá": "Valle del Cauca",
    "Cartago": "Valle del Cauca",
    "Jamundí": "Valle del Cauca",
    "Yumbo": "Valle del Cauca",
    "Barranquilla": "Atlántico",
    "Soledad": "Atlántico",
    "Malambo": "Atlántico",
    "Cartagena": "Bolívar",
    "Magangué": "Bolívar",
    "Cúcuta": "Norte de Santander",
    "Ocaña": "Norte de Santander",
    "Bucaramanga": "Santander",
    "Floridablanca": "Santander",
    "Girón": "Santander",
    "Piedecuesta": "Santander",
    "Barrancabermeja": "Santander",
    "Pereira": "Risaralda",
    "Dosquebradas": "Risaralda",
    "Santa Marta": "Magdalena",
    "Ciénaga": "Magdalena",
    "Ibagué": "Tolima",
    "Espinal": "Tolima",
    "Manizales": "Caldas",
    "Villavicencio": "Meta",
    "Pasto": "Nariño",
    "Tumaco": "Nariño",
    "Ipiales": "Nariño",
    "Montería": "Córdoba",
    "Neiva": "Huila",
    "Pitalito": "Huila",
    "Armenia": "Quindío",
    "Popayán": "Cauca",
    "Sincelejo": "Sucre",
    "Valledupar": "Cesar",
    "Tunja": "Boyacá",
    "Duitama": "Boyacá",
    "Sogamoso": "Boyacá",
    "Riohacha": "La Guajira",
    "Maicao": "La Guajira",
    "Quibdó": "Chocó",
    "Florencia": "Caquetá",
    "Yopal": "Casanare",
    "Mocoa": "Putumayo",
    "San Andrés": "San Andrés y Providencia",
    "Leticia": "Amazonas",
    "Inírida": "Guainía",
    "San José del Guaviare": "Guaviare",
    "Mitú": "Vaupés",
    "Puerto Carreño": "Vichada",
    "Soacha": "Cundinamarca",
    "Chía": "Cundinamarca",
    "Zipaquirá": "Cundinamarca",
    "Facatativá": "Cundinamarca",
    "Fusagasugá": "Cundinamarca",
    "Girardot": "Cundinamarca",
    "Mosquera": "Cundinamarca",
    "Madrid": "Cundinamarca",
    "Funza": "Cundinamarca",
    "Cajicá": "Cundinamarca",
}

_ALIASES: dict[str, str] = {
    "bogota dc": "Bogotá",
    "bogota d c": "Bogotá",
    "bogota d.c.": "Bogotá",
    "bogota d.c": "Bogotá",
    "santafe de bogota": "Bogotá",
    "medallo": "Medellín",
    "barranquilla atlantico": "Barranquilla",
}
_DEPARTMENT_ALIASES: dict[str, str] = {
    "valle": "Valle del Cauca",
    "guajira": "La Guajira",
    "san andres": "San Andrés y Providencia",
    "norte santander": "Norte de Santander",
    "bogota": "Bogotá D.C.",
}

_CITY_BY_KEY: dict[str, str] = {fold_phrase(name): name for name in CITIES}
_CITY_BY_KEY.update(_ALIASES)
_DEPARTMENT_BY_KEY: dict[str, str] = {fold_phrase(name): name for name in DEPARTMENTS}
_DEPARTMENT_BY_KEY.update(_DEPARTMENT_ALIASES)
_LONGEST_CITY_WORDS = max(len(key.split()) for key in _CITY_BY_KEY)


def city_named(folded: str) -> str | None:
    """The city `folded` names exactly ("bogota" -> "Bogotá"), if it is one we know."""
    return _CITY_BY_KEY.get(folded)


def department_named(folded: str) -> str | None:
    """Department names only: "Bogotá" is taken as the city, not the district."""
    if folded == "bogota":
        return None
    return _DEPARTMENT_BY_KEY.get(folded)


def department_of(city: str) -> str | None:
    known = _CITY_BY_KEY.get(fold_phrase(city))
    return CITIES.get(known) if known else None


def trailing_city(folded_words: list[str]) -> tuple[str, int] | None:
    """A known city at the end of a word list ("calle 10 # 5-20 bogota") and how many words
    it takes, so an address that ends with its city can be split."""
    for size in range(min(_LONGEST_CITY_WORDS, len(folded_words) - 1), 0, -1):
        city = _CITY_BY_KEY.get(" ".join(folded_words[-size:]))
        if city:
            return city, size
    return None
