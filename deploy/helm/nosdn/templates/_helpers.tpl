{{/* Labels of every object of one component: nosdn-agent, nosdn-controller, nosdn-uninstall. */}}
{{- define "nosdn.labels" -}}
app.kubernetes.io/name: {{ . }}
app.kubernetes.io/part-of: nosdn
{{- end -}}

{{/* The scrape annotations `nosdn manifests --monitoring` puts on a pod template; the argument is the metrics port. */}}
{{- define "nosdn.scrapeAnnotations" -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ . | toString | quote }}
prometheus.io/path: /metrics
{{- end -}}
