package main

import (
	"log"
	"net/http"

	"github.com/gorilla/websocket"
)

func main() {
	header := http.Header{}
	header.Set("Authorization", "Bearer key")
	conn, _, err := websocket.DefaultDialer.Dial("wss://api.openai.com/v1/realtime?model=gpt-realtime", header)
	if err != nil {
		log.Fatal(err)
	}
	update := map[string]any{
		"type":    "session.update",
		"session": map[string]any{"type": "realtime", "output_modalities": []string{"text"}},
	}
	_ = conn.WriteJSON(update)
	var event map[string]any
	_ = conn.ReadJSON(&event)
	if event["type"] == "response.output_audio_transcript.done" {
		log.Println(event["transcript"])
	}
}
