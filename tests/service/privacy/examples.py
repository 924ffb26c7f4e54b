"""Hand-written feedback with personal data, annotated by hand: the test fixture the detector is measured on.

These are realistic *invented* comments (names, numbers and codes are made up; IBANs, cards, codici fiscali and
partite IVA are checksum-valid test values), not real customer data, and the figures measured on them describe
this fixture only.  Each item is ``(text, [(exact substring, kind), ...])``; a substring is searched from the
end of the previous one, so a value may appear twice.
"""
from __future__ import annotations

Example = tuple[str, list[tuple[str, str]]]

EXAMPLES: list[Example] = [
    # --- Italian, with personal data
    ("Buongiorno, mi chiamo Mario Rossi e vi scrivo perché il pacco non è mai arrivato. Potete ricontattarmi al "
     "333 123 4567?", [("Mario Rossi", "NAME"), ("333 123 4567", "PHONE")]),
    ("Ho scritto tre volte a mario.rossi@example.com senza risposta, servizio pessimo.",
     [("mario.rossi@example.com", "EMAIL")]),
    ("Rimborso ancora non ricevuto. Il mio IBAN è IT60 X054 2811 1010 0000 0123 456, fate presto.",
     [("IT60 X054 2811 1010 0000 0123 456", "IBAN")]),
    ("Fattura sbagliata: il codice fiscale RSSMRA85T10A562S non è il mio e la partita IVA 01114601006 nemmeno.",
     [("RSSMRA85T10A562S", "CODICE_FISCALE"), ("01114601006", "PARTITA_IVA")]),
    ("Mi hanno addebitato due volte sulla carta 4111 1111 1111 1111, voglio il rimborso.",
     [("4111 1111 1111 1111", "CARD")]),
    ("L'operatrice Giulia è stata gentilissima e ha risolto tutto in cinque minuti.", [("Giulia", "NAME")]),
    ("La Sig.ra Bianchi alla reception ci ha fatto aspettare un'ora.", [("Bianchi", "NAME")]),
    ("Chiamate pure il fisso 06 6982 1234 dopo le 18, oppure il cellulare +39 347 765 4321.",
     [("06 6982 1234", "PHONE"), ("+39 347 765 4321", "PHONE")]),
    ("Volo cancellato, nessuna assistenza. Cordiali saluti,\nAnna Maria Ferrari",
     [("Anna Maria Ferrari", "NAME")]),
    ("Ho parlato con Luca del servizio clienti che mi ha promesso una richiamata mai arrivata.",
     [("Luca", "NAME")]),
    ("Documento: carta d'identità AX1234567, mi è stato chiesto tre volte al check-in.",
     [("AX1234567", "ID_DOCUMENT")]),
    ("Scrivetemi su g.verdi@libero.it, il numero 3289876543 non lo uso più.",
     [("g.verdi@libero.it", "EMAIL"), ("3289876543", "PHONE")]),
    ("Il tecnico Paolo è arrivato puntuale, lavoro fatto bene.", [("Paolo", "NAME")]),
    ("Sono Francesca De Luca, cliente da dieci anni, e non ho mai visto un disservizio simile.",
     [("Francesca De Luca", "NAME")]),
    ("La Dott.ssa Esposito è stata molto chiara sulla terapia.", [("Esposito", "NAME")]),
    ("Bonifico fatto dal conto IT42L1234512345123456789012 ma risulta ancora non pagato.",
     [("IT42L1234512345123456789012", "IBAN")]),
    ("Il corriere ha lasciato il pacco al vicino, Giuseppe, senza avvisare.", [("Giuseppe", "NAME")]),
    ("Buonasera, contattatemi a assistenza.clienti+ordini@azienda-esempio.it per il reso.",
     [("assistenza.clienti+ordini@azienda-esempio.it", "EMAIL")]),
    ("Ottimo servizio, grazie mille a Roberta che mi ha seguito passo passo!", [("Roberta", "NAME")]),
    ("Grazie per la pazienza.\nSaluti, Stefano Bruno", [("Stefano Bruno", "NAME")]),
    # --- English, with personal data
    ("My name is John Smith and I have been waiting three weeks for a refund.", [("John Smith", "NAME")]),
    ("Please call me on +44 20 7946 0958, nobody answers the chat.", [("+44 20 7946 0958", "PHONE")]),
    ("You charged my card 5500 0000 0000 0004 twice, fix it.", [("5500 0000 0000 0004", "CARD")]),
    ("The agent, Sarah, was really helpful and patient.", [("Sarah", "NAME")]),
    ("Email me at jane.doe@example.co.uk with the invoice.", [("jane.doe@example.co.uk", "EMAIL")]),
    ("Spoke to Mark Johnson yesterday and he said the order was shipped. It was not.",
     [("Mark Johnson", "NAME")]),
    ("Mrs Thompson at the front desk was rude to my kids.", [("Thompson", "NAME")]),
    ("Refund it to GB82 WEST 1234 5698 7654 32 please.", [("GB82 WEST 1234 5698 7654 32", "IBAN")]),
    ("Great stay, lovely staff.\nBest regards,\nEmily Clarke", [("Emily Clarke", "NAME")]),
    ("Text me on (212) 555-0147 when the technician is on his way.", [("(212) 555-0147", "PHONE")]),
    ("Dr. Patel explained everything clearly, five stars.", [("Patel", "NAME")]),
    ("My husband Tom waited 40 minutes on hold.", [("Tom", "NAME")]),
    ("Il signor Marco Gallo, il vostro agente a Milano, non risponde al telefono.", [("Marco Gallo", "NAME")]),
    ("La mia collega Chiara ha avuto lo stesso problema con l'app.", [("Chiara", "NAME")]),
    # --- no personal data (numbers, codes, capitalised words that are not names)
    ("Il treno era in ritardo di 40 minuti e il personale scortese. Biglietto da 29,90 euro.", []),
    ("Ordine n. 2024-558213 arrivato il 12/03/2026, con due giorni di ritardo.", []),
    ("Volo AZ 1234 partito alle 7:45 invece delle 6:30, coincidenza persa a Fiumicino.", []),
    ("Camera 312 al terzo piano, rumorosa fino alle 2 di notte.", []),
    ("Sono molto deluso dal servizio clienti di Vodafone.", []),
    ("Sono Cliente da anni e non ho mai avuto problemi.", []),
    ("The room was clean but the Wi-Fi kept dropping, 3 stars.", []),
    ("I'm Italian and the staff did not speak a word of it.", []),
    ("Paid 1.249,00 € for the sofa, delivered after 6 weeks. CAP 20121 Milano.", []),
    ("Tracking 1Z999AA10123456784 stuck in Bologna since Monday.", []),
    ("Prodotto cod. 8001234567890 esaurito da mesi.", []),
    ("Best Hotel in Rome, thanks!", []),
    ("Grazie Mille per la disponibilità.", []),
    ("L'app si blocca sulla versione 4.12.3 con Android 14.", []),
    ("Pratica numero 12345 ancora aperta dopo 90 giorni.", []),
    ("This is Terrible: 3 hours on hold and then the line dropped.", []),
]

#: written after the cues were tuned on :data:`EXAMPLES` and never tuned on: the honest figure
HELD_OUT: list[Example] = [
    ("Salve, sono Alessandro Conti. Il modem non funziona da una settimana e nessuno richiama al 3351122334.",
     [("Alessandro Conti", "NAME"), ("3351122334", "PHONE")]),
    ("Addebito non autorizzato sulla Mastercard 5105 1051 0510 5100, chiedo lo storno.",
     [("5105 1051 0510 5100", "CARD")]),
    ("Il mio indirizzo è luca_bianchi79@gmail.com, inviate lì la ricevuta.", [("luca_bianchi79@gmail.com", "EMAIL")]),
    ("Mia moglie Elena ha chiamato quattro volte, sempre la stessa risposta.", [("Elena", "NAME")]),
    ("L'addetta Martina al banco formaggi è stata scortese.", [("Martina", "NAME")]),
    ("Codice fiscale BNCGLI90A41F205H richiesto anche per un semplice reso?!", [("BNCGLI90A41F205H", "CODICE_FISCALE")]),
    ("Ditta individuale, P.IVA 12345678903: la fattura elettronica non arriva.", [("12345678903", "PARTITA_IVA")]),
    ("Thanks to Kevin at the Dublin store, he sorted out my return in minutes.", [("Kevin", "NAME")]),
    ("Ring me back at 07700 900123, I'm available all afternoon.", [("07700 900123", "PHONE")]),
    ("Vorrei parlare con il Dott. Ricci, non con il centralino.", [("Ricci", "NAME")]),
    ("Federico della filiale di Torino mi ha aiutato moltissimo.", [("Federico", "NAME")]),
    ("Rimborso sul conto IT40 S054 2811 1010 0000 0123 456 intestato a Laura Neri.",
     [("IT40 S054 2811 1010 0000 0123 456", "IBAN"), ("Laura Neri", "NAME")]),
    ("Consegna in via Roma 15, 00184 Roma: il corriere non ha nemmeno suonato.", []),
    ("Abbonamento da 9,99 €/mese aumentato a 12,99 senza preavviso dal 1° aprile.", []),
    ("Flight FR 8345 from Bergamo delayed by 2h 15m, gate changed three times.", []),
    ("Ho chiamato il 187 e dopo 20 minuti di attesa è caduta la linea.", []),
    ("Sono Stanca di aspettare: 3 settimane per un rimborso di 45 euro.", []),
    ("Scontrino n. 0045-2231 del 03/02/2026, cassa 4.", []),
    ("Mr Bean would have done a better job than your installer.", [("Bean", "NAME")]),
    ("Hotel Bellavista: colazione ottima, parcheggio a 15 € al giorno.", []),
]
