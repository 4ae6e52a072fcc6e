module example.com/voice

go 1.22

require (
	github.com/WqyJh/go-openai-realtime v0.4.1
	github.com/gorilla/websocket v1.5.3
)
