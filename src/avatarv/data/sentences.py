"""Varied sentences in several languages, composed from small word banks (subject + verb phrase + complement).

Why composed rather than a fixed list: thousands of distinct utterances from a few lines of data, so clips
of the same identity do not repeat their text and the lip-sync model cannot memorise sentences.
"""

from __future__ import annotations

import numpy as np

BANKS: dict[str, dict[str, list[str]]] = {
    "en": {
        "s": ["The little robot", "My neighbour", "A quiet teacher", "Every morning the baker", "Our team",
              "The old captain", "A young pilot", "This small company", "The river", "My brother"],
        "v": ["carefully builds", "quickly paints", "never forgets", "happily shares", "slowly opens",
              "proudly shows", "often visits", "always remembers", "bravely follows", "gently moves"],
        "o": ["a bright blue boat", "the map of the mountains", "five purple apples", "a warm loaf of bread",
              "the window by the sea", "every book on the shelf", "a thousand paper birds", "the big red balloon",
              "our favourite moving picture", "the music of the city"],
        "e": ["before lunch.", "in the evening.", "with a smile.", "without a word.", "every Monday.",
              "under the bridge.", "near the park.", "at the end of the day.", "for the whole family.", "again."],
    },
    "de": {
        "s": ["Der kleine Roboter", "Meine Nachbarin", "Ein ruhiger Lehrer", "Jeden Morgen der Bäcker", "Unser Team",
              "Der alte Kapitän", "Eine junge Pilotin", "Die kleine Firma", "Mein Bruder", "Das Mädchen"],
        "v": ["baut sorgfältig", "malt schnell", "vergisst nie", "teilt gerne", "öffnet langsam",
              "zeigt stolz", "besucht oft", "findet immer", "bringt morgen", "bewegt sanft"],
        "o": ["ein helles blaues Boot", "die Karte der Berge", "fünf rote Äpfel", "ein warmes Brot",
              "das Fenster am Meer", "jedes Buch im Regal", "tausend Papiervögel", "den großen Ballon",
              "unser liebstes Bild", "die Musik der Stadt"],
        "e": ["vor dem Mittag.", "am Abend.", "mit einem Lächeln.", "ohne ein Wort.", "jeden Montag.",
              "unter der Brücke.", "neben dem Park.", "am Ende des Tages.", "für die ganze Familie.", "wieder."],
    },
    "fr": {
        "s": ["Le petit robot", "Ma voisine", "Un professeur calme", "Chaque matin le boulanger", "Notre équipe",
              "Le vieux capitaine", "Une jeune pilote", "La petite entreprise", "Mon frère", "La rivière"],
        "v": ["construit avec soin", "peint vite", "n'oublie jamais", "partage volontiers", "ouvre lentement",
              "montre fièrement", "visite souvent", "trouve toujours", "apporte demain", "déplace doucement"],
        "o": ["un bateau bleu", "la carte des montagnes", "cinq pommes rouges", "un pain chaud",
              "la fenêtre sur la mer", "chaque livre de l'étagère", "mille oiseaux de papier", "le grand ballon",
              "notre image préférée", "la musique de la ville"],
        "e": ["avant midi.", "le soir.", "avec un sourire.", "sans un mot.", "chaque lundi.",
              "sous le pont.", "près du parc.", "à la fin de la journée.", "pour toute la famille.", "encore."],
    },
    "es": {
        "s": ["El pequeño robot", "Mi vecina", "Un maestro tranquilo", "Cada mañana el panadero", "Nuestro equipo",
              "El viejo capitán", "Una joven piloto", "La pequeña empresa", "Mi hermano", "El río"],
        "v": ["construye con cuidado", "pinta rápido", "nunca olvida", "comparte feliz", "abre despacio",
              "muestra orgulloso", "visita a menudo", "encuentra siempre", "trae mañana", "mueve suavemente"],
        "o": ["un barco azul", "el mapa de las montañas", "cinco manzanas rojas", "un pan caliente",
              "la ventana junto al mar", "cada libro del estante", "mil pájaros de papel", "el globo grande",
              "nuestra foto favorita", "la música de la ciudad"],
        "e": ["antes del almuerzo.", "por la tarde.", "con una sonrisa.", "sin una palabra.", "cada lunes.",
              "bajo el puente.", "cerca del parque.", "al final del día.", "para toda la familia.", "otra vez."],
    },
    "it": {
        "s": ["Il piccolo robot", "La mia vicina", "Un maestro calmo", "Ogni mattina il fornaio", "La nostra squadra",
              "Il vecchio capitano", "Una giovane pilota", "La piccola azienda", "Mio fratello", "Il fiume"],
        "v": ["costruisce con cura", "dipinge in fretta", "non dimentica mai", "condivide volentieri", "apre piano",
              "mostra fiero", "visita spesso", "trova sempre", "porta domani", "muove dolcemente"],
        "o": ["una barca blu", "la mappa dei monti", "cinque mele rosse", "un pane caldo", "la finestra sul mare",
              "ogni libro dello scaffale", "mille uccelli di carta", "il grande pallone", "la nostra foto preferita",
              "la musica della città"],
        "e": ["prima di pranzo.", "la sera.", "con un sorriso.", "senza una parola.", "ogni lunedì.",
              "sotto il ponte.", "vicino al parco.", "alla fine del giorno.", "per tutta la famiglia.", "ancora."],
    },
}


def bank_for(language: str) -> dict[str, list[str]]:
    """Word bank of a language code ('en-us' → 'en'); unknown languages fall back to English."""
    return BANKS.get(language.split("-", maxsplit=1)[0], BANKS["en"])


def sentence(rng: np.random.Generator, language: str) -> str:
    b = bank_for(language)
    return " ".join(b[k][int(rng.integers(len(b[k])))] for k in ("s", "v", "o", "e"))


def utterance(rng: np.random.Generator, language: str, n_sentences: int) -> str:
    return " ".join(sentence(rng, language) for _ in range(n_sentences))
