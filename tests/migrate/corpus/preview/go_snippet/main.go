package main

import (
	"encoding/json"
	"log"
	"net/http"

	"github.com/gorilla/websocket"
)

func main() {
	header := http.Header{}
	header.Set("Authorization", "Bearer "+apiKey())
	header.Set("OpenAI-Beta", "realtime=v1")
	conn, _, err := websocket.DefaultDialer.Dial("wss://api.openai.com/v1/realtime?model=gpt-4o-realtime-preview", header)
	if err != nil {
		log.Fatal(err)
	}
	update := map[string]interface{}{
		"type": "session.update",
		"session": map[string]interface{}{
			"modalities":         []string{"text"},
			"input_audio_format": "pcm16",
		},
	}
	if err := conn.WriteJSON(update); err != nil {
		log.Fatal(err)
	}
	for {
		var event map[string]any
		if err := conn.ReadJSON(&event); err != nil {
			return
		}
		switch event["type"] {
		case "response.text.delta":
			log.Print(event["delta"])
		case "response.audio_transcript.done":
			log.Println(event["transcript"])
		}
		_ = json.Marshal
	}
}

func apiKey() string { return "" }
