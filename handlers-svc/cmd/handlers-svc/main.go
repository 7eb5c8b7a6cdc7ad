// Command handlers-svc serves switchboard events with the built-in
// handler families (package handlers); package service does the rest and
// documents it. A team's own build calls service.Main with its families.
package main

import (
	"github.com/switchboard/switchboard/handlers-svc/handlers"
	"github.com/switchboard/switchboard/handlers-svc/service"
)

func main() { service.Main(handlers.Families()...) }
