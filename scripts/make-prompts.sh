#!/usr/bin/env bash
# Renders the engine's default voice prompts into assets/prompts/<lang>/<name>.wav
# (8 kHz mono 16-bit PCM) with the espeak-ng command. espeak-ng is GPL: it is only
# run here, ahead of time, never linked; the WAV files it produced are committed.
#
#   scripts/make-prompts.sh            # all languages
#   scripts/make-prompts.sh da sv      # some
#   PROMPTS="vm_lunch vm_away" scripts/make-prompts.sh   # only these prompts
#
# Needs espeak-ng and sox (for the 22.05 → 8 kHz resampling with a proper filter).
# An administrator replaces any prompt by uploading a WAV (see README, "Prompts").
set -euo pipefail
cd "$(dirname "$0")/.."
command -v espeak-ng >/dev/null || { echo "make-prompts: espeak-ng is not installed" >&2; exit 1; }
command -v sox >/dev/null || { echo "make-prompts: sox is not installed" >&2; exit 1; }

langs=("$@")
[ ${#langs[@]} -gt 0 ] || langs=(da sv nb fi en)

# name|English|Danish|Swedish|Norwegian (bokmål)|Finnish
read -r -d '' TABLE <<'T' || true
welcome|Welcome, thank you for calling.|Velkommen, tak fordi du ringer.|Välkommen, tack för att du ringer.|Velkommen, takk for at du ringer.|Tervetuloa, kiitos soitostasi.
closed|We are closed right now. Please call again during our opening hours.|Vi har lukket lige nu. Ring venligst igen i vores åbningstid.|Vi har stängt just nu. Välkommen att ringa igen under våra öppettider.|Vi har stengt nå. Vennligst ring igjen i vår åpningstid.|Olemme nyt suljettu. Soita uudelleen aukioloaikanamme.
holiday|We are closed for the holiday. Please call again on the next working day.|Vi har lukket på grund af helligdag. Ring venligst igen på næste hverdag.|Vi har stängt på grund av helgdag. Ring gärna igen nästa vardag.|Vi har stengt på grunn av helligdag. Vennligst ring igjen neste virkedag.|Olemme suljettu pyhäpäivän vuoksi. Soita uudelleen seuraavana arkipäivänä.
menu|For sales, press 1. For support, press 2. For the operator, press 0.|Tryk 1 for salg. Tryk 2 for support. Tryk 0 for omstillingen.|Tryck 1 för försäljning. Tryck 2 för support. Tryck 0 för växeln.|Trykk 1 for salg. Trykk 2 for kundestøtte. Trykk 0 for sentralbordet.|Myynti, paina 1. Tuki, paina 2. Vaihde, paina 0.
invalid|That is not a valid choice. Please try again.|Det er ikke et gyldigt valg. Prøv venligst igen.|Det är inte ett giltigt val. Försök igen.|Det er ikke et gyldig valg. Vennligst prøv igjen.|Valinta ei kelpaa. Yritä uudelleen.
no_answer|Nobody can take your call right now. Please try again later.|Ingen kan tage dit opkald lige nu. Prøv venligst igen senere.|Ingen kan ta ditt samtal just nu. Försök igen senare.|Ingen kan ta samtalen din akkurat nå. Vennligst prøv igjen senere.|Kukaan ei voi vastata puheluusi juuri nyt. Yritä myöhemmin uudelleen.
queue|Please hold, you will be connected shortly.|Vent venligst, du bliver stillet om om lidt.|Var god vänta, du kopplas snart fram.|Vennligst vent, du blir satt over om litt.|Odota hetki, sinut yhdistetään pian.
vm_greeting|The person you called cannot answer right now.|Personen du ringer til kan ikke tage telefonen lige nu.|Personen du ringer till kan inte svara just nu.|Personen du ringer til kan ikke svare akkurat nå.|Soittamasi henkilö ei voi vastata juuri nyt.
vm_closed|We are closed right now.|Vi har lukket lige nu.|Vi har stängt just nu.|Vi har stengt nå.|Olemme nyt suljettu.
vm_after_tone|Please leave a message after the tone. Press hash when you are done.|Indtal venligst en besked efter tonen. Tryk firkant når du er færdig.|Lämna ett meddelande efter tonen. Tryck fyrkant när du är klar.|Legg igjen en beskjed etter tonen. Trykk firkant når du er ferdig.|Jätä viesti äänimerkin jälkeen. Paina risuaitaa, kun olet valmis.
vm_saved|Thank you, your message has been saved.|Tak, din besked er gemt.|Tack, ditt meddelande är sparat.|Takk, beskjeden din er lagret.|Kiitos, viestisi on tallennettu.
vm_pin|Please enter your PIN code, then press hash.|Indtast venligst din pinkode, og tryk derefter firkant.|Slå din pinkod och tryck sedan fyrkant.|Tast inn PIN-koden din, og trykk deretter firkant.|Anna PIN-koodisi ja paina sitten risuaitaa.
vm_wrong_pin|Wrong PIN code. Goodbye.|Forkert pinkode. Farvel.|Fel pinkod. Hej då.|Feil PIN-kode. Ha det.|Väärä PIN-koodi. Näkemiin.
vm_menu|Press 1 to hear the message again, 2 for the next message, 3 to delete it.|Tryk 1 for at høre beskeden igen, 2 for næste besked, 3 for at slette den.|Tryck 1 för att höra meddelandet igen, 2 för nästa meddelande, 3 för att radera det.|Trykk 1 for å høre beskjeden igjen, 2 for neste beskjed, 3 for å slette den.|Paina 1 kuullaksesi viestin uudelleen, 2 seuraavaan viestiin, 3 poistaaksesi sen.
vm_deleted|Message deleted.|Beskeden er slettet.|Meddelandet är raderat.|Beskjeden er slettet.|Viesti poistettu.
vm_no_messages|You have no more messages. Goodbye.|Du har ikke flere beskeder. Farvel.|Du har inga fler meddelanden. Hej då.|Du har ingen flere beskjeder. Ha det.|Sinulla ei ole enempää viestejä. Näkemiin.
activated|The service is now activated.|Tjenesten er nu aktiveret.|Tjänsten är nu aktiverad.|Tjenesten er nå aktivert.|Palvelu on nyt käytössä.
deactivated|The service is now deactivated.|Tjenesten er nu deaktiveret.|Tjänsten är nu avaktiverad.|Tjenesten er nå deaktivert.|Palvelu on nyt poistettu käytöstä.
not_active|This service is not active.|Denne tjeneste er ikke aktiv.|Denna tjänst är inte aktiv.|Denne tjenesten er ikke aktiv.|Tämä palvelu ei ole käytössä.
goodbye|Goodbye.|Farvel.|Hej då.|Ha det.|Näkemiin.
echo|Echo test. What you say is played back to you.|Ekkotest. Det du siger bliver afspillet igen.|Ekotest. Det du säger spelas upp igen.|Ekkotest. Det du sier blir spilt av igjen.|Kaikutesti. Puheesi toistetaan sinulle.
vm_lunch|The person you called is at lunch.|Personen du ringer til er til frokost.|Personen du ringer till är på lunch.|Personen du ringer til er på lunsj.|Soittamasi henkilö on lounaalla.
vm_meeting|The person you called is in a meeting.|Personen du ringer til er til møde.|Personen du ringer till sitter i möte.|Personen du ringer til er i møte.|Soittamasi henkilö on kokouksessa.
vm_away|The person you called is away right now.|Personen du ringer til er ikke til stede lige nu.|Personen du ringer till är inte på plats just nu.|Personen du ringer til er ikke til stede akkurat nå.|Soittamasi henkilö ei ole paikalla juuri nyt.
vm_vacation|The person you called is on holiday.|Personen du ringer til holder ferie.|Personen du ringer till har semester.|Personen du ringer til har ferie.|Soittamasi henkilö on lomalla.
T

voice_of() {
    case "$1" in
        en) echo en-gb ;; da) echo da ;; sv) echo sv ;; nb) echo nb ;; fi) echo fi ;;
        *) echo "make-prompts: unknown language $1" >&2; exit 1 ;;
    esac
}
column_of() {
    case "$1" in en) echo 2 ;; da) echo 3 ;; sv) echo 4 ;; nb) echo 5 ;; fi) echo 6 ;; esac
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for lang in "${langs[@]}"; do
    voice=$(voice_of "$lang")
    col=$(column_of "$lang")
    out="assets/prompts/$lang"
    mkdir -p "$out"
    while IFS= read -r line; do
        [ -n "$line" ] || continue
        name=${line%%|*}
        if [ -n "${PROMPTS:-}" ] && [[ " $PROMPTS " != *" $name "* ]]; then continue; fi
        text=$(printf '%s' "$line" | cut -d'|' -f"$col")
        espeak-ng -v "$voice" -s 150 -w "$tmp/raw.wav" -- "$text"
        # 8 kHz mono 16-bit; a little headroom; 150 ms of silence at the end.
        sox -q "$tmp/raw.wav" -r 8000 -c 1 -b 16 "$out/$name.wav" gain -n -3 pad 0 0.15
    done <<<"$TABLE"
    echo "make-prompts: $lang → $out"
done

[ -z "${PROMPTS:-}" ] || [[ " $PROMPTS " == *" music "* ]] || exit 0
# Music on hold (no words, one file for every language): a slow arpeggio, 16 s, looped.
notes=""
for f in 261.6 329.6 392.0 523.3 392.0 329.6 293.7 349.2 440.0 587.3 440.0 349.2 \
         246.9 293.7 392.0 493.9 392.0 293.7 261.6 329.6 392.0 523.3 392.0 329.6; do
    sox -q -n -r 8000 -c 1 -b 16 "$tmp/n$f.wav" synth 0.5 sine "$f" fade q 0.02 0.5 0.2 vol 0.25
    notes="$notes $tmp/n$f.wav"
done
# shellcheck disable=SC2086
sox -q $notes "$tmp/moh.wav"
sox -q "$tmp/moh.wav" "assets/prompts/music.wav" repeat 1
echo "make-prompts: music on hold → assets/prompts/music.wav"
