"""Aufgabe 1: Mittelwert und Standardabweichung einer Messreihe."""

import math


def mittelwert(werte):
    return sum(werte) / len(werte)


def standardabweichung(werte):
    m = mittelwert(werte)
    return math.sqrt(sum((x - m) ** 2 for x in werte) / (len(werte) - 1))


if __name__ == "__main__":
    messwerte = [4.2, 3.9, 4.8, 5.1, 4.4, 4.0, 4.7, 5.3, 3.8, 4.6]
    print(f"Mittelwert: {mittelwert(messwerte):.2f}")
    print(f"Standardabweichung: {standardabweichung(messwerte):.2f}")
