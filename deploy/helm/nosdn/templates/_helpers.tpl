{{/* Labels of every object of one component: nosdn-agent, nosdn-controller, nosdn-uninstall. */}}
{{- define "nosdn.labels" -}}
app.kubernetes.io/name: {{ . }}
app.kubernetes.io/part-of: nosdn
{{- end -}}
